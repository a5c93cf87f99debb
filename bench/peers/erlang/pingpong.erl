%% pingpong: two processes bounce a message N times (default 10M);
%% rate = round trips per second.  Peer of bench/pingpong.c.
-module(pingpong).
-export([main/0, main/1]).

main() -> main([]).
main(Args) ->
    N = case Args of [A | _] -> list_to_integer(A); [] -> 10000000 end,
    Self = self(),
    Pong = spawn(fun pong/0),
    Ping = spawn(fun() ->
                     receive go -> ok end,
                     T0 = erlang:monotonic_time(),
                     ping(Pong, N),
                     Self ! {done, erlang:monotonic_time() - T0}
                 end),
    Ping ! go,
    receive {done, T} ->
        S = erlang:convert_time_unit(T, native, nanosecond) / 1.0e9,
        io:format("name=pingpong n=~b seconds=~.3f rate=~b~n", [N, S, round(N / S)])
    end,
    halt(0).

ping(_Pong, 0) -> ok;
ping(Pong, K) ->
    Pong ! {ping, self(), K},
    receive {pong, K} -> ping(Pong, K - 1) end.

pong() ->
    receive {ping, From, K} -> From ! {pong, K}, pong() end.
