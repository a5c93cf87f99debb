%% skynet: a 10-ary tree of 1,111,111 processes down to 1,000,000 leaves
%% that sum their ids; each process spawns 10 children and sums their
%% replies.  rate = processes per second; the sum must be 499999500000.
%% Peer of bench/skynet.c.  Needs a process limit above 1,111,111:
%%   erl -noshell +S 2 +P 2000000 -pa _build/bench/erlang -run skynet main
-module(skynet).
-export([main/0, main/1]).

main() -> main([]).
main(Args) ->
    Leaves = case Args of [A | _] -> list_to_integer(A); [] -> 1000000 end,
    Actors = actors(Leaves),
    case erlang:system_info(process_limit) of
        Lim when Lim < Actors + 100 ->
            io:format(standard_error, "skynet: process limit ~b is too low for ~b processes;"
                      " run erl with +P 2000000~n", [Lim, Actors]),
            halt(2);
        _ -> ok
    end,
    Self = self(),
    T0 = erlang:monotonic_time(),
    spawn(fun() -> skynet(Self, 0, Leaves) end),
    Sum = receive {sum, X} -> X end,
    T = erlang:monotonic_time() - T0,
    S = erlang:convert_time_unit(T, native, nanosecond) / 1.0e9,
    Expect = Leaves * (Leaves - 1) div 2,
    io:format("name=skynet n=~b seconds=~.3f rate=~b leaves=~b sum=~b ok=~s~n",
              [Actors, S, round(Actors / S), Leaves, Sum, Sum =:= Expect]),
    halt(case Sum =:= Expect of true -> 0; false -> 1 end).

actors(1) -> 1;
actors(L) -> L + actors(L div 10).

skynet(Parent, Num, 1) -> Parent ! {sum, Num};
skynet(Parent, Num, Size) ->
    Sub = Size div 10,
    Self = self(),
    [spawn(fun() -> skynet(Self, Num + I * Sub, Sub) end) || I <- lists:seq(0, 9)],
    Parent ! {sum, collect(10, 0)}.

collect(0, Acc) -> Acc;
collect(K, Acc) -> receive {sum, X} -> collect(K - 1, Acc + X) end.
