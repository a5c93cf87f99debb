%% memory: 100,000 idle processes (N); prints bytes_per_actor from the delta of
%% erlang:memory(processes), and rss_bytes_per_actor from VmRSS; rate =
%% spawns per second.  Peer of bench/memory.c.
-module(memory).
-export([main/0, main/1]).

main() -> main([]).
main(Args) ->
    N = case Args of [A | _] -> list_to_integer(A); [] -> 100000 end,
    erlang:garbage_collect(),
    P0 = erlang:memory(processes),
    R0 = rss(),
    T0 = erlang:monotonic_time(),
    Pids = [spawn(fun idle/0) || _ <- lists:seq(1, N)],
    T = erlang:monotonic_time() - T0,
    P1 = erlang:memory(processes),
    R1 = rss(),
    S = erlang:convert_time_unit(T, native, nanosecond) / 1.0e9,
    io:format("name=memory n=~b seconds=~.3f rate=~b bytes_per_actor=~b rss_bytes_per_actor=~b~n",
              [N, S, round(N / S), (P1 - P0) div N, (R1 - R0) div N]),
    [P ! stop || P <- Pids],
    halt(0).

idle() -> receive stop -> ok end.

rss() ->
    {ok, B} = file:read_file("/proc/self/statm"),
    [_, Res | _] = binary:split(B, <<" ">>, [global]),
    binary_to_integer(Res) * 4096.
