%% fanout: one process sends to 10,000 subscribers that each ack, 300 rounds
%% (N = rounds); rate = deliveries per second.  Peer of bench/fanout.c.
-module(fanout).
-export([main/0, main/1]).

-define(SUBS, 10000).

main() -> main([]).
main(Args) ->
    Rounds = case Args of [A | _] -> list_to_integer(A); [] -> 300 end,
    Self = self(),
    Pub = spawn(fun() ->
                    Subs = [spawn(fun sub/0) || _ <- lists:seq(1, ?SUBS)],
                    receive go -> ok end,
                    T0 = erlang:monotonic_time(),
                    rounds(Subs, Rounds),
                    Self ! {done, erlang:monotonic_time() - T0}
                end),
    Pub ! go,
    receive {done, T} ->
        S = erlang:convert_time_unit(T, native, nanosecond) / 1.0e9,
        D = Rounds * ?SUBS,
        io:format("name=fanout n=~b seconds=~.3f rate=~b subscribers=~b rounds=~b~n",
                  [D, S, round(D / S), ?SUBS, Rounds])
    end,
    halt(0).

rounds(_Subs, 0) -> ok;
rounds(Subs, R) ->
    Msg = {deliver, self(), R},
    lists:foreach(fun(P) -> P ! Msg end, Subs),
    acks(?SUBS, R),
    rounds(Subs, R - 1).

acks(0, _R) -> ok;
acks(K, R) -> receive {ack, R} -> acks(K - 1, R) end.

sub() ->
    receive {deliver, From, R} -> From ! {ack, R}, sub() end.
