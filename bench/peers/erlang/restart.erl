%% restart: a gen_server child of an OTP supervisor (one_for_one, intensity
%% 1000000 in 1 s) crashes right after init and is restarted N times (default
%% 100,000); each child instance notifies an observer from init.
%% rate = restarts per second.  Peer of bench/restart.c.
%% OTP's logger is silenced (level none) by default: our runtime logs nothing
%% when a child crashes, so that is the like-for-like figure.  A second
%% argument `logger` keeps OTP's logger as shipped: every crash then makes a
%% gen_server crash report and a supervisor child_terminated report (the
%% figure the issue quotes, ~3,000-5,000/s), sent to stderr so that stdout
%% holds the one result line.
-module(restart).
-behaviour(supervisor).
-export([main/0, main/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, start_child/1]).

main() -> main([]).
main(Args) ->
    N = case Args of [A | _] -> list_to_integer(A); [] -> 100000 end,
    Logger = case Args of [_, "logger" | _] -> default; _ -> none end,
    case Logger of
        none -> ok = logger:set_primary_config(level, none);
        default -> ok = logger:remove_handler(default),
                   ok = logger:add_handler(default, logger_std_h,
                                           #{config => #{type => standard_error}})
    end,
    Self = self(),
    T0 = erlang:monotonic_time(),
    {ok, Sup} = supervisor:start_link(?MODULE, {sup, Self}),
    wait(N + 1),                       % the first start and N restarts
    T = erlang:monotonic_time() - T0,
    S = erlang:convert_time_unit(T, native, nanosecond) / 1.0e9,
    io:format("name=restart n=~b seconds=~.3f rate=~b logger=~s~n",
              [N, S, round(N / S), Logger]),
    unlink(Sup),
    exit(Sup, kill),
    halt(0).

wait(0) -> ok;
wait(K) -> receive started -> wait(K - 1) end.

start_child(Observer) -> gen_server:start_link(?MODULE, {child, Observer}, []).

%% supervisor and gen_server callbacks share init/1
init({sup, Observer}) ->
    {ok, {#{strategy => one_for_one, intensity => 1000000, period => 1},
          [#{id => crasher, start => {?MODULE, start_child, [Observer]},
             restart => permanent, shutdown => brutal_kill, type => worker}]}};
init({child, Observer}) ->
    Observer ! started,
    self() ! crash,
    {ok, Observer}.

handle_call(_Req, _From, S) -> {reply, ok, S}.
handle_cast(_Msg, S) -> {noreply, S}.
handle_info(crash, _S) -> erlang:error(crash).
