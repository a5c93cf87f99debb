%% ring: 1,000 processes in a ring pass a token N hops (default 10M);
%% rate = hops per second.  Peer of bench/ring.c.
-module(ring).
-export([main/0, main/1]).

-define(NODES, 1000).

main() -> main([]).
main(Args) ->
    N = case Args of [A | _] -> list_to_integer(A); [] -> 10000000 end,
    Self = self(),
    Pids = [spawn(fun() -> receive {next, Next} -> node(Next, Self) end end)
            || _ <- lists:seq(1, ?NODES)],
    [First | _] = Pids,
    lists:foreach(fun({P, Nx}) -> P ! {next, Nx} end,
                  lists:zip(Pids, tl(Pids) ++ [First])),
    T0 = erlang:monotonic_time(),
    First ! {token, N},
    receive done -> ok end,
    T = erlang:monotonic_time() - T0,
    S = erlang:convert_time_unit(T, native, nanosecond) / 1.0e9,
    io:format("name=ring n=~b seconds=~.3f rate=~b nodes=~b~n", [N, S, round(N / S), ?NODES]),
    halt(0).

node(Next, Main) ->
    receive
        {token, 0} -> Main ! done, node(Next, Main);
        {token, K} -> Next ! {token, K - 1}, node(Next, Main)
    end.
