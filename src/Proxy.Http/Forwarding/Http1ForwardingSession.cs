using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Proxy.Core.Addresses;
using Proxy.Core.Balancing;
using Proxy.Core.Configuration;
using Proxy.Core.Discovery;
using Proxy.Core.Tcp;
using Proxy.Core.Transport;
using Proxy.Core.Identity;
using Proxy.Core.Upstream;
using Proxy.Http.Authorization;
using Proxy.Http.Http1;
using Proxy.Http.Http2.Server;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Routing;

namespace Proxy.Http.Forwarding;

/// <summary>
/// One client connection served by an <see cref="Http1Forwarder"/>: the request loop and everything it reuses
/// from one request to the next (heads, body readers, timers, record scratch). Allocated once per connection.
/// </summary>
/// <remarks>
/// Per request (numbers match README.md):
/// 1. read and parse the request head (idle timer armed); parse error: proxy-made 4xx/5xx, close;
/// 2. route (route table / service / fixed address), pick the endpoint, observer.OnRequestRouted;
/// 3. rent an upstream connection, write the request head (hop-by-hop dropped, mutations applied), flush;
/// 4. request body, if any: a pump task streams it to the upstream while step 5 waits for the response;
/// 5. read the response head (response timer armed); 1xx interim relayed (100 only when the client asked);
///    a reused connection that was closed before any response byte: retry once on a new one when safe;
/// 6. 101 / 2xx-to-CONNECT: byte tunnel (PipeForwarder) to the end of the connection;
/// 7. otherwise write the response head (mutations applied, connection field), stream the body;
/// 8. settle the pump, return the upstream connection (reusable only at a clean boundary), record.
/// </remarks>
internal sealed partial class Http1ForwardingSession : IDisposable
{
    private readonly Http1Forwarder _forwarder;
    private readonly Http1ForwarderOptions _options;
    private readonly ConnectionContext _downstream;
    private readonly bool _isHttp2Lane;
    private readonly Http2Lane? _lane;
    private readonly IDuplexPipe _client;
    private Http1Routing _routing;
    private readonly CancellationToken _cancellationToken;
    private readonly TimeProvider _time;
    private readonly IHttpRequestObserver _observer;
    // Swapped with the lane's spare when an HTTP/2 stream's head arrives parsed (see ReadRequestHeadAsync).
    private Http1RequestHead _request = new();
    private readonly Http1ResponseHead _response = new();
    private readonly CoalescingBufferWriter _requestHeadWriter = new();
    private readonly CoalescingBufferWriter _responseHeadWriter = new();
    private readonly ContentLengthBodyReader _requestLength = new();
    private readonly ContentLengthBodyReader _responseLength = new();
    private readonly ChunkedBodyReader _requestChunks;
    private readonly ChunkedBodyReader _responseChunks;
    private readonly ITimer? _idleTimer;
    private ITimer? _responseTimer;
    private CancellationTokenRegistration _cancellation;
    private CancellationTokenSource? _rentDeadline;

    // Timer and cancellation state (written by timer callbacks on other threads).
    private volatile bool _cancelled;
    private volatile bool _idleArmed;
    private volatile bool _idleTimedOut;
    private volatile PipeReader? _awaitingResponse;
    private volatile bool _responseTimedOut;

    // gRPC (GrpcSemantics): the request is a gRPC call; its grpc-timeout as an absolute deadline (timestamp; 0: none).
    private bool _grpc;
    private long _deadline;
    private TimeSpan _grpcTimeout;
    private volatile bool _deadlineExpired;
    private bool _rentExpired;
    private long _responseClockStart;
    private long _lastRequestProgress;

    // Timers are armed lazily: arming records a start time and schedules the timer only when it is not already
    // scheduled; disarming only clears the state. A callback that finds its timer disarmed lets it go idle, one that
    // finds it re-armed reschedules for the time left. A busy keep-alive connection thus changes each timer about once
    // per timeout period instead of twice per request (each change takes the runtime's timer-queue lock).
    private long _idleSince;
    private int _idleScheduled;

    // The idle timeout in force (ticks; -1 ms: none): the options' until a drain shortens it (Http1ForwardingSession.Drain.cs).
    private long _idleLimitTicks;
    private int _responseScheduled;

    // Per-request state, reset by BeginRequest.
    private SequencePosition _requestHeadEnd;
    private bool _requestHeadConsumed = true;
    // The head came parsed from the HTTP/2 lane, not from the client's bytes: consuming it advances nothing.
    private bool _requestHeadTyped;
    private SequencePosition _responseHeadEnd;
    private bool _responseBytesSeen;
    private bool _sent100;
    private ValueTask<PumpOutcome> _pump;
    private bool _pumpStarted;
    private volatile bool _pumpCancelled;
    private PipeWriter? _pumpOutput;
    private Http1ParseException? _bodyError;
    private string? _badResponseReason;
    private long _requestStart;
    private string _service = "unknown";

    // The pool of the current exchange: HTTP/1.1 connections or HTTP/2 streams (per service, see ChoosePool).
    private IUpstreamPool _pool;
    private string? _subset;
    private string _route = "";
    private bool _routed;
    private UpstreamAddress? _endpoint;
    private int _attempts;
    private bool _reused;
    private long _requestBytes;
    private long _responseBytes;
    private int _status;
    private TimeSpan? _upstreamDuration;
    private string? _error;
    private bool _proxyMade;
    private bool _abortClient;
    private string? _upstreamFailure;

    // Security (Authorization/HttpSecurity): the connection's verified peer (read once), the policy that decided the
    // request (access log), the subject header to strip and set upstream, the challenge header of a proxy-made 401.
    private readonly IPeerIdentityFeature? _peer;
    private string? _policy;
    private byte[]? _subjectHeader;
    private byte[]? _subjectValue;
    private HeaderField? _challenge;

    // The connection's last validated token (a client on a keep-alive connection sends the same one every time):
    // reused while it has not expired, for the same authenticator and JWKS snapshot, so repeats skip validation.
    private JwtAuthenticator? _cachedJwt;
    private JwksKeys? _cachedKeys;
    private byte[]? _cachedToken;
    private JwtPrincipal? _cachedPrincipal;

    // The exchange in flight (set by StartExchangeAsync/AttemptAsync, read after the response wait in RunAsync).
    private PooledConnection? _connection;
    private bool _hasBody;
    private UpstreamAddress _address;
    private HeaderMutations _requestMutations = HeaderMutations.None;

    // This request goes to a peer sidecar as an HTTP/2 stream although its client spoke HTTP/1.1 (mesh, ChoosePool).
    private bool _meshUpgrade;
    private HeaderMutations _responseMutations = HeaderMutations.None;
    private Endpoint? _pickedEndpoint;
    private long _endpointToken;

    // Retries (issue 6): the request's policy (its route's, else its service's), the balanced service it retries
    // within, and how many retries were made.
    private RetryPolicyConfig? _retryPolicy;
    private Service? _retryService;
    private int _retries;
    private long _headWritten;

    // Request-body replay for retries (Http1ForwardingSession.Replay.cs): the kept copy of the request (one buffer per
    // session, made on the first request that needs it), whether this request is being kept, whether the pump started
    // (its readers are reset once per request, then resumed on a retry), finished the body, or met a broken body, and
    // whether a settled, unfinished pump left body bytes unread on the client connection.
    private RequestReplayBuffer? _replay;
    private bool _replaying;
    private bool _bodyStarted;
    private bool _bodyComplete;
    private bool _bodyBroken;
    private bool _bodyAbandoned;

    // Copies of method, target and authority for the record (the head's spans die when the head is consumed).
    private byte[]? _recordScratch;
    private int _methodLength;
    private int _targetLength;
    private int _authorityLength;
    private Http1Version _version;

    public Http1ForwardingSession(Http1Forwarder forwarder, ConnectionContext downstream, Http1Routing routing, CancellationToken cancellationToken)
    {
        _forwarder = forwarder;
        _options = forwarder.Options;
        _downstream = downstream;
        _lane = downstream as Http2Lane;
        _isHttp2Lane = _lane is not null;
        _pool = forwarder.Pool;
        _client = downstream.Transport;
        _routing = routing;
        _routingSource = routing.Source;
        _cancellationToken = cancellationToken;
        _time = _options.TimeProvider;
        _observer = _options.Observer;
        _requestChunks = new ChunkedBodyReader(_options.Parser);
        _responseChunks = new ChunkedBodyReader(_options.Parser);
        _peer = downstream.Features.Get<IPeerIdentityFeature>();
        _idleLimitTicks = _options.IdleTimeout.Ticks;
        if (_options.IdleTimeout != Timeout.InfiniteTimeSpan || DrainApplies)
        {
            _idleTimer = _time.CreateTimer(static s => ((Http1ForwardingSession)s!).OnIdleTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        if (_options.ResponseTimeout != Timeout.InfiniteTimeSpan)
        {
            _responseTimer = _time.CreateTimer(static s => ((Http1ForwardingSession)s!).OnResponseTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    private enum HeadOutcome : byte
    {
        Parsed,
        Invalid,
        Closed,
    }

    private enum ResponseOutcome : byte
    {
        Pending,
        Parsed,
        Closed,
        Reset,
        BadResponse,
        Timeout,
        Cancelled,
    }

    private enum BodyOutcome : byte
    {
        Completed,
        UpstreamClosed,
        UpstreamReset,
        BadResponse,
        ClientClosed,
        Cancelled,
        TimedOut,
    }

    private enum Step : byte
    {
        Close,
        KeepAlive,
        AwaitResponse,
    }

    private enum PumpOutcome : byte
    {
        Completed,
        ClientClosed,
        BadBody,
        UpstreamFailed,
        Cancelled,
    }

    public async Task RunAsync()
    {
        if (_cancellationToken.CanBeCanceled)
        {
            _cancellation = _cancellationToken.UnsafeRegister(static s => ((Http1ForwardingSession)s!).OnCancelled(), this);
        }

        RegisterDrain();

        try
        {
            await RequestLoopAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.Unexpected(_forwarder.Logger, _forwarder.Listener, ex);
            _abortClient = true;
        }

        if (_abortClient)
        {
            _downstream.Abort(new ConnectionAbortedException("The HTTP exchange failed after the response head was sent."));
        }

        await _client.Input.CompleteAsync().ConfigureAwait(false);
        await _client.Output.CompleteAsync().ConfigureAwait(false);
    }

    public void Dispose()
    {
        _cancellation.Dispose();
        _drainRegistration.Dispose();
        _rentDeadline?.Dispose();
        _idleTimer?.Dispose();
        _responseTimer?.Dispose();
        _streamTimer?.Dispose();
        _headerTimer?.Dispose();
        _request.Dispose();
        _response.Dispose();
        if (_recordScratch is not null)
        {
            ArrayPool<byte>.Shared.Return(_recordScratch);
            _recordScratch = null;
        }
    }

    /// <summary>
    /// The request loop. The two waits of a usual exchange (the client's next request head, the upstream's
    /// response) are awaited here, directly in this connection-lifetime method, so that its state machine is the
    /// only one that suspends (allocated once per connection). Once data is there, the per-request steps run on
    /// the buffered bytes and complete synchronously (pooled builders allocate nothing when they do not suspend);
    /// only rare paths (a head split over reads, big or chunked bodies, 1xx, tunnels, retries, errors) suspend
    /// in their own methods.
    /// </summary>
    private async Task RequestLoopAsync()
    {
        var input = _client.Input;
        while (!_cancelled)
        {
            // Resumed per request for the connection's life: no execution context captured at its awaits.
            SuppressedFlow.Ensure();
            // 1. Wait for the next request's first bytes; leave them unexamined so the parse reads them at once.
            ArmIdleTimer();
            var closed = false;
            try
            {
                var peek = await input.ReadAsync().ConfigureAwait(false);
                input.AdvanceTo(peek.Buffer.Start);
                closed = peek.IsCanceled && (_idleTimedOut || _cancelled);
            }
            catch (Exception ex) when (IsConnectionError(ex))
            {
                closed = true;
            }

            if (closed)
            {
                DisarmIdleTimer();
                return;
            }

            if (await ReadRequestHeadAsync().ConfigureAwait(false) != HeadOutcome.Parsed)
            {
                return;
            }

            BeginRequest();
            var keepAlive = false;
            try
            {
                var step = await StartExchangeAsync().ConfigureAwait(false);
                if (step == Step.AwaitResponse)
                {
                    // 5. Wait for the upstream's first response bytes, likewise left unexamined for the parse.
                    var upstreamInput = _connection!.Connection.Transport.Input;
                    var early = ResponseOutcome.Pending;
                    try
                    {
                        var peek = await upstreamInput.ReadAsync().ConfigureAwait(false);
                        upstreamInput.AdvanceTo(peek.Buffer.Start);
                        if (peek.IsCanceled)
                        {
                            early = _responseTimedOut ? ResponseOutcome.Timeout : _cancelled ? ResponseOutcome.Cancelled : ResponseOutcome.Pending;
                            if (early == ResponseOutcome.Pending)
                            {
                                // Woken empty, as an HTTP/2 exchange does for a typed response head: the parse's read
                                // must wake the same way to take it.
                                upstreamInput.CancelPendingRead();
                            }
                        }
                    }
                    catch (Exception ex) when (IsConnectionError(ex))
                    {
                        early = ResponseOutcome.Reset;
                    }

                    step = await CompleteExchangeAsync(early).ConfigureAwait(false) ? Step.KeepAlive : Step.Close;
                }

                keepAlive = step == Step.KeepAlive;
            }
            finally
            {
                EndEndpointRequest();
                ConsumeRequestHead();
                CompleteRequest();
                EndReplay();
            }

            if (!keepAlive)
            {
                return;
            }
        }
    }

    private static bool IsConnectionError(Exception ex) =>
        ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException;

    // ---- 1. request head -------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HeadOutcome> ReadRequestHeadAsync()
    {
        // The idle timer was armed by RequestLoopAsync before it waited for the first bytes.
        var input = _client.Input;
        try
        {
            if (_lane is { } lane && lane.TryTakeTypedRequest(ref _request))
            {
                // An HTTP/2 stream's head, parsed by the HTTP/2 side from its own copy (the lane woke this read
                // empty); the body, if any, follows in the lane as before. Readable until the next request.
                _requestHeadTyped = true;
                _requestHeadConsumed = false;
                return HeadOutcome.Parsed;
            }

            while (true)
            {
                ReadResult result;
                try
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
                {
                    return HeadOutcome.Closed;
                }

                var buffer = result.Buffer;
                if (result.IsCanceled)
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    if (HeaderTimedOut)
                    {
                        // Slowloris: the head's first byte came, the rest did not within the header timeout.
                        await RespondHeaderTimeoutAsync().ConfigureAwait(false);
                        return HeadOutcome.Invalid;
                    }

                    if (_idleTimedOut || _cancelled)
                    {
                        return HeadOutcome.Closed;
                    }

                    continue;
                }

                bool parsed;
                SequencePosition consumed;
                try
                {
                    parsed = _forwarder.RequestParser.TryParse(buffer, _request, out consumed);
                }
                catch (Http1ParseException e)
                {
                    input.AdvanceTo(buffer.End);
                    _requestHeadConsumed = true;
                    await RespondBadRequestAsync(e).ConfigureAwait(false);
                    return HeadOutcome.Invalid;
                }

                if (parsed)
                {
                    // Not consumed yet: routing and the upstream head read the head's spans in place.
                    _requestHeadEnd = consumed;
                    _requestHeadTyped = false;
                    _requestHeadConsumed = false;
                    return HeadOutcome.Parsed;
                }

                if (result.IsCompleted)
                {
                    // Client closed (between requests, or mid-head): nothing to answer.
                    input.AdvanceTo(buffer.End);
                    return HeadOutcome.Closed;
                }

                ArmHeaderTimer();
                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        finally
        {
            DisarmIdleTimer();
            DisarmHeaderTimer();
        }
    }

    private async ValueTask RespondBadRequestAsync(Http1ParseException e)
    {
        BeginRequest();
        Log.BadRequest(_forwarder.Logger, _forwarder.Listener, e.Reason);
        _status = e.StatusCode;
        _error = ProxyErrors.BadRequest;
        _proxyMade = true;
        ProxyResponse.Write(_client.Output, e.StatusCode, ProxyErrors.BadRequest,
            $"listener {_forwarder.Listener} refused the request: it breaks HTTP/1.1 framing rules ({e.Reason})", close: true);
        await FlushClientAsync().ConfigureAwait(false);
        CompleteRequest();
    }

    private void ConsumeRequestHead()
    {
        if (!_requestHeadConsumed)
        {
            _requestHeadConsumed = true;
            if (!_requestHeadTyped)
            {
                _client.Input.AdvanceTo(_requestHeadEnd);
            }
        }
    }

    // ---- 2. routing ------------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Step> StartExchangeAsync()
    {
        if (GrpcSemantics.IsGrpc(_request.Headers))
        {
            StartGrpcCall();
        }

        TakeRequestId();
        if (!NormalizePath())
        {
            return ToStep(await RespondAsync(400, ProxyErrors.BadRequest, "the request path holds an encoded NUL (%00), which path normalization refuses").ConfigureAwait(false));
        }

        if (SecurityForRequest() is { } security)
        {
            var (refused, keepAlive) = await AuthorizeAsync(security).ConfigureAwait(false);
            if (refused)
            {
                return ToStep(keepAlive);
            }
        }

        var requestMutations = HeaderMutations.None;
        var responseMutations = HeaderMutations.None;
        Service? service = null;
        Route? matched = null;
        UpstreamAddress address = default;
        var routing = _routing;
        if (routing.Routes is { } routes)
        {
            if (!routes.TryMatch(_request, _peer?.PeerIdentity, out var route))
            {
                return ToStep(await RespondAsync(404, ProxyErrors.NoRoute, RouteTable.DescribeNoRoute(_request, _forwarder.Listener)).ConfigureAwait(false));
            }

            _route = route.Name;
            matched = route;
            if (route.Action.AnswersItself)
            {
                return ToStep(await AnswerFromRouteAsync(route).ConfigureAwait(false));
            }

            if (route.Action.RewritesTarget)
            {
                RewriteTarget(route.Action);
            }

            _retryPolicy = route.Config.Retries;
            requestMutations = route.Action.RequestHeaders;
            responseMutations = route.Action.ResponseHeaders;
            var destination = route.Action.PickDestination(_options.Random);
            _service = destination.Service;
            _subset = destination.Subset;
            service = routing.Resolve!(destination.Service);
            if (service is not null && destination.Subset is not null)
            {
                service = service.FindSubset(destination.Subset);
            }

            if (service is null)
            {
                return ToStep(await RespondAsync(503, ProxyErrors.NoEndpoint, DescribeNoEndpoint(route.Name)).ConfigureAwait(false));
            }
        }
        else if (routing.Service is { } fixedService)
        {
            service = fixedService;
            _service = fixedService.Name;
            _subset = fixedService.SubsetName;
        }
        else
        {
            address = routing.Address!.Value;
            _service = routing.AddressService;
        }

        if (!TryAdmit(service, matched))
        {
            return ToStep(await RespondLimitedAsync().ConfigureAwait(false));
        }

        StartTimeouts(matched?.Config.Timeouts);
        if (matched?.Config.Fault is { } fault && await InjectFaultAsync(fault).ConfigureAwait(false) is { } faulted)
        {
            return ToStep(faulted);
        }

        _pool = ChoosePool(service?.UpstreamProtocol ?? UpstreamProtocol.Same, service?.Upstreams);
        Endpoint? endpoint = null;
        if (service is not null)
        {
            _retryPolicy ??= service.Retries;
            if (_retryPolicy is not null)
            {
                _retryService = service;
                service.RetryBudget.OnRequest();
            }

            var context = BalancerContextFor(service);
            if (!service.TryPick(in context, out endpoint))
            {
                return ToStep(await RespondNoEndpointAsync(service).ConfigureAwait(false));
            }

            OnEndpointPicked(service, endpoint);
            address = endpoint.Address;
        }

        _endpoint = address;
        _routed = true;
        _observer.OnRequestRouted(_forwarder.Listener, _service, _route);
        // Ended by EndEndpointRequest (RequestLoopAsync's finally), whatever happens from here on.
        _pickedEndpoint = endpoint;
        _endpointToken = endpoint?.OnRequestStart() ?? 0;
        _address = address;
        _requestMutations = requestMutations;
        _responseMutations = responseMutations;
        _hasBody = _request.BodyKind == Http1BodyKind.Chunked || (_request.BodyKind == Http1BodyKind.ContentLength && _request.ContentLength > 0);
        BeginReplay();
        return await AttemptAsync().ConfigureAwait(false);
    }

    // ---- 2a. authentication and authorization (Authorization/README.md) ---------------------------

    /// <summary>
    /// JWT (the matched route's authenticator, else the listener's), then the policies. Refused: the proxy answered
    /// (401 jwt_missing / jwt_invalid, 403 policy_denied) and KeepAlive says whether the connection stays usable.
    /// Without a JWT authenticator this completes synchronously and allocates nothing.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(bool Refused, bool KeepAlive)> AuthorizeAsync(HttpSecurity security)
    {
        JwtPrincipal? principal = null;
        var jwt = security.ListenerJwt;
        if (security.HasRouteJwt && _routing.Routes is { } routes)
        {
            // Matched again by StartExchangeAsync: the double match is paid only on listeners with per-route JWT.
            jwt = security.For(routes.TryMatch(_request, _peer?.PeerIdentity, out var route) ? route.Config : null);
        }

        if (jwt is not null)
        {
            _subjectHeader = jwt.ForwardSubjectHeader;
            principal = CachedPrincipal(jwt);
            string? token = null;
            string? problem = null;
            if (principal is null)
            {
                token = ReadBearerToken(jwt, out problem);
            }

            if (principal is null && token is null && problem is not null)
            {
                return (true, await RespondUnauthorizedAsync(problem == JwtAuthenticator.Missing ? JwtAuthenticator.Missing : JwtAuthenticator.Invalid,
                    problem == JwtAuthenticator.Missing
                        ? $"listener {_forwarder.Listener} requires a JWT bearer token in the {jwt.Config.FromHeader} field and the request has none"
                        : $"listener {_forwarder.Listener} refused the token: {problem}").ConfigureAwait(false));
            }

            if (token is not null)
            {
                var result = await jwt.ValidateAsync(token, _cancellationToken).ConfigureAwait(false);
                if (!result.Ok)
                {
                    return (true, await RespondUnauthorizedAsync(result.Error!, $"listener {_forwarder.Listener} refused the token: {result.Reason}").ConfigureAwait(false));
                }

                principal = result.Principal!;
                _cachedJwt = jwt;
                _cachedKeys = jwt.Keys.Keys;
                _cachedToken = System.Text.Encoding.ASCII.GetBytes(token);
                _cachedPrincipal = principal;
            }

            if (principal is not null)
            {
                _subjectValue = principal.SubjectBytes;
            }
        }

        if (security.Policies is { } state && state.Current is { IsEmpty: false } policies)
        {
            var decision = policies.EvaluateHttp(_peer, DestinationPort(), _request, principal);
            state.Record(_forwarder.Listener, in decision);
            _policy = decision.Policy;
            if (!decision.Allowed)
            {
                return (true, await RespondAsync(403, ProxyErrors.PolicyDenied, decision.Describe(_forwarder.Listener)).ConfigureAwait(false));
            }
        }

        return (false, true);
    }

    /// <summary>The principal of the connection's last token when this request carries the same, still valid one.</summary>
    private JwtPrincipal? CachedPrincipal(JwtAuthenticator jwt)
    {
        if (_cachedPrincipal is not { } cached || !ReferenceEquals(_cachedJwt, jwt) || !ReferenceEquals(_cachedKeys, jwt.Keys.Keys)
            || !_request.Headers.TryGetValue(jwt.FromHeader, out var value) || !JwtAuthenticator.TryGetBearer(value, out var token)
            || !token.SequenceEqual(_cachedToken) || cached.ValidTo <= _time.GetUtcNow().UtcDateTime)
        {
            return null;
        }

        return cached;
    }

    /// <summary>The bearer token of the request (a string: the validator needs one), or null with why (null: none and not required).</summary>
    private string? ReadBearerToken(JwtAuthenticator jwt, out string? problem)
    {
        problem = null;
        if (!_request.Headers.TryGetValue(jwt.FromHeader, out var value))
        {
            problem = jwt.Config.Required ? JwtAuthenticator.Missing : null;
            return null;
        }

        if (!JwtAuthenticator.TryGetBearer(value, out var token))
        {
            problem = $"the {jwt.Config.FromHeader} field is not a Bearer credential (the token is malformed)";
            return null;
        }

        return System.Text.Encoding.ASCII.GetString(token);
    }

    private ValueTask<bool> RespondUnauthorizedAsync(string error, string sentence)
    {
        // RFC 6750 §3: the challenge says why; the description is the sentence without characters a quoted string cannot hold.
        var description = sentence.Replace('"', '\'').Replace('\\', '/');
        _challenge = new HeaderField("www-authenticate"u8.ToArray(), System.Text.Encoding.UTF8.GetBytes($"Bearer error=\"invalid_token\", error_description=\"{description}\""));
        return RespondAsync(401, error, sentence);
    }

    /// <summary>The port the client dialled: the original destination's (captured), else the listener's own.</summary>
    private int DestinationPort() => _routing.Address is { } address ? address.EndPoint.Port : (_downstream.LocalEndPoint as IPEndPoint)?.Port ?? 0;

    /// <summary>
    /// HTTP/2 upstream streams for services that ask for HTTP/2, and for HTTP/2 clients when the service says "same"
    /// (also captured traffic to unknown destinations: a client that spoke HTTP/2 with prior knowledge knows the
    /// server does). Upgrade requests always go over HTTP/1.1: HTTP/2 has no Upgrade.
    /// A service with its own pools (<see cref="ServiceUpstreams"/>: TLS origination) is served from those.
    /// </summary>
    private IUpstreamPool ChoosePool(UpstreamProtocol protocol, ServiceUpstreams? own)
    {
        _meshUpgrade = false;
        var http1 = own?.Http1Pool ?? _forwarder.Pool;
        if ((own?.Http2Pool ?? _forwarder.Http2Pool) is not { } http2 || _request.IsUpgrade || _request.Method == Http1Method.Connect)
        {
            return http1;
        }

        if (protocol != UpstreamProtocol.Same)
        {
            return protocol == UpstreamProtocol.Http2 ? http2 : http1;
        }

        if (_isHttp2Lane)
        {
            // A stream a peer sidecar upgraded from HTTP/1.1 (mesh mTLS only: a client cannot ask for this) goes to the
            // app as the HTTP/1.1 it was.
            return _peer is { Transport: PeerTransport.MutualTls } && IsMeshUpgraded(_request.Headers) ? http1 : http2;
        }

        _meshUpgrade = own is { UpgradeHttp1: true } && _request.Version == Http1Version.Http11;
        return _meshUpgrade ? http2 : http1;
    }

    /// <summary>
    /// The field a sidecar adds to an HTTP/1.1 request it carries to a peer sidecar as an HTTP/2 stream (mesh mTLS), so
    /// the peer hands it to its app as HTTP/1.1 again (Linkerd's l5d-orig-proto). Never forwarded to an app: every copy
    /// is dropped when a request head is written.
    /// </summary>
    internal static ReadOnlySpan<byte> MeshOrigProtoName => "proxy-mesh-orig-proto"u8;

    private static ReadOnlySpan<byte> MeshOrigProtoHttp11 => "HTTP/1.1"u8;

    private static bool IsMeshUpgraded(Http1HeaderList headers)
        => headers.TryGetValue(MeshOrigProtoName, out var value) && value.SequenceEqual(MeshOrigProtoHttp11);

    /// <summary>
    /// A gRPC call: proxy-made failures answer in gRPC form, and its <c>grpc-timeout</c> (forwarded unchanged) also
    /// bounds how long the proxy waits for the response head: past it the caller gets DEADLINE_EXCEEDED from us.
    /// After the head the deadline is the endpoints' business (both the gRPC client and server enforce it).
    /// </summary>
    private void StartGrpcCall()
    {
        _grpc = true;
        if (!_request.Headers.TryGetValue("grpc-timeout"u8, out var value) || !GrpcSemantics.TryParseTimeout(value, out var timeout))
        {
            return;
        }

        _grpcTimeout = timeout;
        var stamps = timeout.TotalSeconds * _time.TimestampFrequency;
        _deadline = stamps >= long.MaxValue / 2 ? 0 : _requestStart + Math.Max(1, (long)stamps);
        if (_deadline != 0 && _responseTimer is null)
        {
            // Made on the first call that needs it (no response timeout configured): a gRPC-free session never pays.
            _responseTimer = _time.CreateTimer(static s => ((Http1ForwardingSession)s!).OnResponseTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    private static Step ToStep(bool keepAlive) => keepAlive ? Step.KeepAlive : Step.Close;

    private void EndEndpointRequest()
    {
        ReleaseLimits();
        if (_pickedEndpoint is { } endpoint)
        {
            _pickedEndpoint = null;
            endpoint.OnRequestEnd(_endpointToken, _error is null);
        }
    }

    private string DescribeNoEndpoint(string route)
    {
        var where = route.Length == 0 ? $"on listener {_forwarder.Listener}" : $"(route {route} on listener {_forwarder.Listener})";
        return _subset is null || _routing.Resolve!(_service) is null
            ? $"service {_service} {where} is unknown, so there is no endpoint to send the request to"
            : $"service {_service} has no subset {_subset} {where}, so there is no endpoint to send the request to";
    }

    private BalancerContext BalancerContextFor(Service service)
    {
        switch (service.HashOn)
        {
            case HashOn.SourceIp when _downstream.RemoteEndPoint is IPEndPoint ip:
                return BalancerContext.WithSourceAddress(ip.Address);
            case HashOn.Header when service.HashKey.Length != 0:
                return _request.Headers.TryGetValue(service.HashKey, out var value) ? BalancerContext.WithKey(value) : BalancerContext.None;
            case HashOn.Cookie when service.HashKey.Length != 0:
                return TryFindCookie(_request.Headers, service.HashKey, out var cookie) ? BalancerContext.WithKey(cookie) : BalancerContext.None;
            default:
                return BalancerContext.None;
        }
    }

    /// <summary>Value of the cookie <paramref name="name"/> in any Cookie field (<c>a=1; b=2</c>, RFC 6265 §4.2).</summary>
    internal static bool TryFindCookie(Http1HeaderList headers, ReadOnlySpan<byte> name, out ReadOnlySpan<byte> value)
    {
        for (var i = headers.IndexOf("cookie"u8); i >= 0; i = headers.IndexOf("cookie"u8, i + 1))
        {
            var rest = headers.GetValue(i);
            while (!rest.IsEmpty)
            {
                var semi = rest.IndexOf((byte)';');
                var pair = semi < 0 ? rest : rest[..semi];
                rest = semi < 0 ? default : rest[(semi + 1)..];
                pair = pair.Trim((byte)' ');
                var eq = pair.IndexOf((byte)'=');
                if (eq > 0 && pair[..eq].SequenceEqual(name))
                {
                    value = pair[(eq + 1)..].Trim((byte)'"');
                    return true;
                }
            }
        }

        value = default;
        return false;
    }

    // ---- 3-8. the upstream exchange ---------------------------------------------------------------

    /// <summary>
    /// One attempt: rents an upstream connection, writes the request head, starts the body pump and arms the
    /// response timer. <see cref="Step.AwaitResponse"/> with <see cref="_connection"/> set, or the request was
    /// answered by the proxy. Completes synchronously when an idle connection exists and the flush does.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Step> AttemptAsync()
    {
        var address = _address;
        var hasBody = _hasBody;
        while (true)
        {
            _attempts++;
            _responseBytesSeen = false;
            PoolRentResult rent;
            if (PendingFull())
            {
                return ToStep(await RespondLimitedAsync().ConfigureAwait(false));
            }

            if (!RentIsBounded)
            {
                var renting = _pool.RentAsync(address, _cancellationToken);
                rent = renting.IsCompletedSuccessfully ? renting.Result : await AwaitRentAsync(renting).ConfigureAwait(false);
            }
            else
            {
                // A gRPC call's deadline also bounds getting a connection (a connect, a pool wait, an HTTP/2 handshake).
                var (outcome, result) = await RentBeforeDeadlineAsync(address).ConfigureAwait(false);
                if (outcome != ResponseOutcome.Pending)
                {
                    return ToStep(await RespondUpstreamFailureAsync(outcome, hasBody).ConfigureAwait(false));
                }

                rent = result;
            }

            if (!rent.IsSuccess)
            {
                ReportConnectFailure(rent.Failure.Cause);
                if (rent.Failure.Cause is not (ConnectFailureCause.PoolExhausted or ConnectFailureCause.Overflow) && ShouldRetry(RetryOn.ConnectFailure, safe: true, "connect-failure"))
                {
                    if (!await PrepareRetryAsync().ConfigureAwait(false))
                    {
                        return ToStep(await CancelledAsync().ConfigureAwait(false));
                    }

                    address = _address;
                    continue;
                }

                return ToStep(await RespondConnectFailureAsync(rent.Failure, hasBody).ConfigureAwait(false));
            }

            var connection = rent.Connection!;
            _reused = connection.IsReused;
            var upstream = connection.Connection.Transport;
            if (_replaying)
            {
                WriteKeptRequest(upstream.Output);
            }
            else if (connection.Connection is not Http2UpstreamExchange exchange || _options.TextHeadsForHttp2 || !TrySendHttp2Head(exchange, _requestMutations))
            {
                WriteRequestHead(upstream.Output, _requestMutations);
            }

            if (!await FlushUpstreamAsync(upstream.Output).ConfigureAwait(false))
            {
                // The pooled connection was dead before a byte left: always safe to retry once.
                _pool.Return(connection, reusable: false);
                if (_reused && _attempts < 2)
                {
                    Log.Retrying(_forwarder.Logger, address);
                    continue;
                }

                return ToStep(await RespondUpstreamFailureAsync(ResponseOutcome.Reset, hasBody).ConfigureAwait(false));
            }

            _headWritten = _time.GetTimestamp();
            if (hasBody && !_bodyComplete)
            {
                ConsumeRequestHead();
                StartPump(upstream.Output, connection.Connection);
            }

            _connection = connection;
            ArmResponseTimer(upstream.Input, _headWritten);
            return Step.AwaitResponse;
        }
    }

    /// <summary>
    /// Rents within what is left of the gRPC deadline: <see cref="ResponseOutcome.Pending"/> and the pool's result,
    /// <see cref="ResponseOutcome.Timeout"/> (deadline expired, <see cref="_deadlineExpired"/> set) or
    /// <see cref="ResponseOutcome.Cancelled"/> (the client went away). The pools undo a cancelled rent themselves.
    /// </summary>
    private async ValueTask<(ResponseOutcome Outcome, PoolRentResult Rent)> RentBeforeDeadlineAsync(UpstreamAddress address)
    {
        var left = DueIn(Timeout.InfiniteTimeSpan);
        if (left <= TimeSpan.Zero && left != Timeout.InfiniteTimeSpan)
        {
            _deadlineExpired = _rentExpired = true;
            return (ResponseOutcome.Timeout, default);
        }

        // A route's connect timeout nearer than the deadline bounds the rent instead (Http1ForwardingSession.Timeouts.cs).
        var connectBound = _connectTimeout != Timeout.InfiniteTimeSpan && (left == Timeout.InfiniteTimeSpan || _connectTimeout < left);
        left = connectBound ? _connectTimeout : left;

        // One source per session, reset after each rent; made on the first deadline-bound rent. OnCancelled cancels it.
        var source = _rentDeadline ??= new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        if (_cancelled)
        {
            return (ResponseOutcome.Cancelled, default);
        }

        source.CancelAfter(left);
        try
        {
            return (ResponseOutcome.Pending, await AwaitRentAsync(_pool.RentAsync(address, source.Token)).ConfigureAwait(false));
        }
        catch (OperationCanceledException)
        {
            if (_cancelled)
            {
                return (ResponseOutcome.Cancelled, default);
            }

            if (connectBound)
            {
                return (ResponseOutcome.Pending, ConnectTimedOut(address));
            }

            _deadlineExpired = _rentExpired = true;
            return (ResponseOutcome.Timeout, default);
        }
        finally
        {
            if (!source.TryReset())
            {
                _rentDeadline = null;
                source.Dispose();
            }
        }
    }

    /// <summary>
    /// After the first response bytes arrived (or <paramref name="early"/> says why none will): reads the final
    /// response head, retries once on the reuse race, forwards the response. True when the client connection stays usable.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> CompleteExchangeAsync(ResponseOutcome early)
    {
        var hasBody = _hasBody;
        while (true)
        {
            var connection = _connection!;
            ResponseOutcome outcome;
            if (early == ResponseOutcome.Pending)
            {
                outcome = await ReadFinalResponseHeadAsync(connection.Connection.Transport.Input).ConfigureAwait(false);
            }
            else
            {
                DisarmResponseTimer();
                outcome = early;
                early = ResponseOutcome.Pending;
            }

            if (outcome == ResponseOutcome.Parsed)
            {
                ReportUpstreamStatus(_response.StatusCode);
                if (_retryPolicy is not null && RetriableResponse(_retryPolicy, out var safe) is { } reason && RetryPermitted(RetryOn.None, safe)
                    && await SettlePumpForRetryAsync().ConfigureAwait(false) && ShouldRetry(RetryOn.None, safe, reason))
                {
                    // Drop this answer (the connection goes with it: its body is not read) and try again.
                    _connection = null;
                    _pool.Return(connection, reusable: false);
                    if (!await PrepareRetryAsync().ConfigureAwait(false))
                    {
                        return await CancelledAsync().ConfigureAwait(false);
                    }

                    var again = await AttemptAsync().ConfigureAwait(false);
                    if (again != Step.AwaitResponse)
                    {
                        return again == Step.KeepAlive;
                    }

                    continue;
                }

                _upstreamDuration = _time.GetElapsedTime(_headWritten);
                return await ForwardResponseAsync(connection, _responseMutations, hasBody).ConfigureAwait(false);
            }

            // Settle the pump before the pool may complete the connection's output it still writes to.
            var pump = _pumpStarted ? await SettlePumpAsync(cancel: true).ConfigureAwait(false) : PumpOutcome.Completed;
            _connection = null;
            // An HTTP/2 stream says how it ended (read before Return: the pool reuses the object).
            var refused = false;
            if (connection.Connection is IUpstreamExchangeStatus status)
            {
                refused = status.WasRefused;
                _upstreamFailure = status.FailureDescription;
            }

            ReportNoResponse(outcome, refused, stream: connection.Connection is IUpstreamExchangeStatus);
            _pool.Return(connection, reusable: false);
            var retry = outcome is ResponseOutcome.Closed or ResponseOutcome.Reset && !_responseBytesSeen && _attempts < 2 && BodyReplayable()
                && ((_reused && IsIdempotent(_request.Method)) || refused);
            if (!retry && outcome is ResponseOutcome.Closed or ResponseOutcome.Reset && !_responseBytesSeen
                && (refused ? ShouldRetry(RetryOn.RefusedStream, safe: true, "refused-stream") : ShouldRetry(RetryOn.Reset, safe: false, "reset")))
            {
                // The retry policy: another try, on another endpoint when there is one, after a backoff.
                if (!await PrepareRetryAsync().ConfigureAwait(false))
                {
                    return await CancelledAsync().ConfigureAwait(false);
                }

                retry = true;
            }

            if (!retry && outcome == ResponseOutcome.Timeout && PerTryTimedOut
                && ShouldRetry(RetryOn.GatewayError | RetryOn.Status5xx, safe: false, "per-try-timeout"))
            {
                // A per-try timeout is retried as the 504 it would answer (Envoy: 5xx, gateway-error).
                if (!await PrepareRetryAsync().ConfigureAwait(false))
                {
                    return await CancelledAsync().ConfigureAwait(false);
                }

                retry = true;
            }

            if (retry)
            {
                // The reuse race (the upstream closed its idle connection while our request was on the way), or an
                // HTTP/2 stream the upstream refused unprocessed (REFUSED_STREAM, GOAWAY): once more on a new connection/stream.
                Log.Retrying(_forwarder.Logger, _address);
                var step = await AttemptAsync().ConfigureAwait(false);
                if (step != Step.AwaitResponse)
                {
                    return step == Step.KeepAlive;
                }

                continue;
            }

            if (pump == PumpOutcome.ClientClosed)
            {
                _error = ProxyErrors.ClientClosed;
                return false;
            }

            if (pump == PumpOutcome.BadBody)
            {
                return await RespondBadBodyAsync().ConfigureAwait(false);
            }

            return await RespondUpstreamFailureAsync(outcome, hasBody).ConfigureAwait(false);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ForwardResponseAsync(PooledConnection connection, HeaderMutations responseMutations, bool hasBody)
    {
        var upstream = connection.Connection.Transport;
        var response = _response;
        _status = response.StatusCode;
        if (response.StatusCode == 101 && !_request.IsUpgrade)
        {
            upstream.Input.AdvanceTo(_responseHeadEnd);
            _badResponseReason = "101 to a request that did not ask to upgrade";
            if (_pumpStarted)
            {
                await SettlePumpAsync(cancel: true).ConfigureAwait(false);
            }

            // Only now that the pump is settled: the pool may complete the connection's output.
            _pool.Return(connection, reusable: false);

            return await RespondUpstreamFailureAsync(ResponseOutcome.BadResponse, hasBody).ConfigureAwait(false);
        }

        if (response.SwitchesToTunnel)
        {
            return await TunnelAsync(connection, responseMutations).ConfigureAwait(false);
        }

        var output = _client.Output;
        var clientHttp10 = _request.Version == Http1Version.Http10;
        // An HTTP/1.0 client cannot read chunked: send the payload close-delimited.
        var dechunk = response.BodyKind == Http1BodyKind.Chunked && clientHttp10;
        var keepAlive = _request.KeepAlive && response.BodyKind != Http1BodyKind.CloseDelimited && !dechunk && !_draining;
        if ((_pumpStarted && !_pump.IsCompleted && _request.ExpectContinue && !_sent100) || _bodyAbandoned)
        {
            // (Or a retriable answer stopped the body's pump, and then no retry was made: the rest of the body is unread.)
            // Final status without 100: the client may or may not send the body now; the connection cannot be reused (RFC 9110 §10.1.1).
            keepAlive = false;
        }

        if (_downstream is Http2Lane lane && !dechunk && !_options.TextHeadsForHttp2)
        {
            SetLaneResponseHead(lane, responseMutations, keepAlive);
        }
        else
        {
            WriteResponseHead(output, responseMutations, keepAlive, dechunk);
        }

        upstream.Input.AdvanceTo(_responseHeadEnd);
        if (!hasBody)
        {
            ConsumeRequestHead();
        }

        ArmStreamTimer(upstream.Input);
        var body = await ForwardResponseBodyAsync(upstream.Input, output, dechunk).ConfigureAwait(false);
        if (EndStreamTimer())
        {
            // Fired (request deadline or stream idle): the body broke off, or (a race) it had just completed and the
            // timer's cancels may still be pending on both connections: neither is reused.
            body = body == BodyOutcome.Completed ? body : BodyOutcome.TimedOut;
            keepAlive = false;
        }

        var pump = PumpOutcome.Completed;
        if (_pumpStarted)
        {
            if (!_pump.IsCompleted)
            {
                // The upstream answered without reading the whole body: stop forwarding it; the rest of it is
                // unread on the client connection, which therefore closes.
                keepAlive = false;
            }

            pump = await SettlePumpAsync(cancel: true).ConfigureAwait(false);
            if (pump != PumpOutcome.Completed)
            {
                keepAlive = false;
            }
        }

        var reusable = body == BodyOutcome.Completed && pump == PumpOutcome.Completed && _streamTimeoutError is null && response.KeepAlive && response.BodyKind != Http1BodyKind.CloseDelimited;
        _pool.Return(connection, reusable);
        switch (body)
        {
            case BodyOutcome.Completed:
                if (pump == PumpOutcome.ClientClosed)
                {
                    _error = ProxyErrors.ClientClosed;
                }

                return keepAlive;
            case BodyOutcome.ClientClosed:
            case BodyOutcome.Cancelled:
                _error = ProxyErrors.ClientClosed;
                return false;
            default:
                // The head is out: the only way left to say the response is broken is to reset the client connection.
                _error = body switch
                {
                    BodyOutcome.UpstreamReset => ProxyErrors.UpstreamReset,
                    BodyOutcome.BadResponse => ProxyErrors.UpstreamBadResponse,
                    BodyOutcome.TimedOut => _streamTimeoutError!,
                    _ => ProxyErrors.UpstreamClosed,
                };
                Log.ResponseAborted(_forwarder.Logger, _endpoint!.Value, _error);
                _abortClient = true;
                return false;
        }
    }

    // ---- retries (issue 6) --------------------------------------------------------------------------

    /// <summary>
    /// Whether to try again: the policy lists the condition (<paramref name="condition"/>; None: the caller already
    /// matched a response against it), tries are left, the request has no body (it was streamed, not kept), the method
    /// may be repeated (<paramref name="safe"/>: nothing reached the upstream; else idempotent, or the policy allows all),
    /// and the service's budget has a retry left. Counts the retry (or the budget refusal).
    /// </summary>
    private bool ShouldRetry(RetryOn condition, bool safe, string reason)
    {
        if (!RetryPermitted(condition, safe) || !BodyReplayable())
        {
            return false;
        }

        var service = _retryService!;
        if (!TryHoldRetrySlot(service))
        {
            return false;
        }

        if (!service.RetryBudget.TryRetry())
        {
            _observer.OnRetryBudgetExhausted(_forwarder.Listener, _service);
            Log.RetryBudgetExhausted(_forwarder.Logger, _service, reason);
            return false;
        }

        _retries++;
        _observer.OnRetry(_forwarder.Listener, _service, reason);
        return true;
    }

    /// <summary>
    /// Whether the policy lists the condition (None: the caller already matched a response against it), tries are left,
    /// and the method may be repeated (<paramref name="safe"/>: nothing reached the upstream, or a gRPC status the policy
    /// names; else idempotent, or the policy allows all). Neither the budget nor the body is looked at.
    /// </summary>
    private bool RetryPermitted(RetryOn condition, bool safe) =>
        _retryPolicy is { } policy && _retryService is not null && !_cancelled
        && (condition == RetryOn.None || (policy.On & condition) != 0) && _retries < policy.MaxRetries
        && (safe || policy.NonIdempotent || IsIdempotent(_request.Method));

    /// <summary>
    /// The retry reason (the status, or the gRPC status's name) when the parsed response is one the policy retries, else
    /// null. <paramref name="safe"/>: a gRPC condition matched (retried whatever the method: gRPC calls are all POSTs, and
    /// a policy that names a gRPC status asks for exactly that, as Envoy's retry_grpc_on does).
    /// </summary>
    private string? RetriableResponse(RetryPolicyConfig policy, out bool safe)
    {
        safe = false;
        var status = _response.StatusCode;
        var on = policy.On;
        if (_grpc && (on & RetryOn.AnyGrpc) != 0 && GrpcRetryReason(on) is { } grpcReason)
        {
            safe = true;
            return grpcReason;
        }

        if (status >= 500 && ((on & RetryOn.Status5xx) != 0 || ((on & RetryOn.GatewayError) != 0 && status is 502 or 503 or 504)))
        {
            return StatusReason(status);
        }

        if ((on & RetryOn.RetriableStatusCodes) != 0)
        {
            foreach (var code in policy.StatusCodes)
            {
                if (code == status)
                {
                    return StatusReason(status);
                }
            }
        }

        return null;
    }

    private static string StatusReason(int status) => status switch
    {
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => status.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Before a retry: the failed endpoint's request ends as a failure, the backoff passes (full jitter: a random wait up
    /// to base x 2^(retry-1), capped), and an endpoint is picked again, another one when the service has one (three
    /// picks at most). False when the client went away meanwhile.
    /// </summary>
    private async ValueTask<bool> PrepareRetryAsync()
    {
        var failed = _address;
        if (_pickedEndpoint is { } previous)
        {
            _pickedEndpoint = null;
            previous.OnRequestEnd(_endpointToken, success: false);
        }

        var policy = _retryPolicy!;
        var ceiling = Math.Min(policy.MaxBackoff.Ticks, policy.Backoff.Ticks << Math.Min(_retries - 1, 20));
        var wait = TimeSpan.FromTicks((long)(ceiling * (_options.Random.Next(1_000_000) / 1_000_000.0)));
        if (wait > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(wait, _time, _cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        if (_cancelled)
        {
            return false;
        }

        var service = _retryService!;
        var context = BalancerContextFor(service);
        if (!TryPickForRetry(service, in context, failed, out var endpoint))
        {
            // The service has no endpoints left (discovery emptied it meanwhile): the failed address once more.
            Log.RetryingPolicy(_forwarder.Logger, failed, _address, _retries, policy.MaxRetries);
            return true;
        }

        OnEndpointPicked(service, endpoint);
        _pickedEndpoint = endpoint;
        _endpointToken = endpoint.OnRequestStart();
        _address = endpoint.Address;
        _endpoint = endpoint.Address;
        Log.RetryingPolicy(_forwarder.Logger, failed, _address, _retries, policy.MaxRetries);
        return true;
    }

    private static bool IsIdempotent(Http1Method method) =>
        method is Http1Method.Get or Http1Method.Head or Http1Method.Options or Http1Method.Trace or Http1Method.Put or Http1Method.Delete;

    private void WriteRequestHead(IBufferWriter<byte> output, HeaderMutations mutations)
    {
        var writer = _requestHeadWriter.Start(output);
        var head = _request;
        // HTTP/1.0 requests go upstream as HTTP/1.0 (transparency: no Host is invented, and the upstream frames
        // its response for a 1.0 client), asking for keep-alive so the upstream connection can be pooled.
        Http1HeadWriter.WriteRequestLine(writer, head.MethodBytes, UpstreamTarget, head.Version);
        WriteFields(writer, head.Headers, mutations, _subjectHeader);
        if (_subjectHeader is not null && _subjectValue is not null)
        {
            // The validated token's subject; every incoming copy was dropped above, so a client cannot forge it.
            Http1HeadWriter.WriteHeader(writer, _subjectHeader, _subjectValue);
        }

        if (_requestIdGenerated && !mutations.IsRemoved(RequestIdName))
        {
            Http1HeadWriter.WriteHeader(writer, RequestIdName, _requestId.AsSpan(0, _requestIdLength));
        }

        if (_meshUpgrade)
        {
            Http1HeadWriter.WriteHeader(writer, MeshOrigProtoName, MeshOrigProtoHttp11);
        }

        if (head.BodyKind == Http1BodyKind.Chunked)
        {
            writer.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        // TE is hop-by-hop, but this hop takes trailers too (forwarded as chunked trailers or HTTP/2 trailers), so
        // the client's "trailers" is said again: gRPC servers expect it (RFC 9110 §10.1.4).
        if (AcceptsTrailers(head.Headers))
        {
            writer.Write("TE: trailers\r\n"u8);
        }

        if (head.IsUpgrade)
        {
            writer.Write("Connection: upgrade\r\n"u8);
            Http1HeadWriter.WriteHeader(writer, "Upgrade"u8, head.Upgrade);
        }
        else if (head.Version == Http1Version.Http10)
        {
            writer.Write("Connection: keep-alive\r\n"u8);
        }

        Http1HeadWriter.WriteEndOfHead(writer);
        writer.Commit();
    }

    /// <summary>True when a TE field lists the <c>trailers</c> token (case-insensitive, RFC 9110 §10.1.4).</summary>
    internal static bool AcceptsTrailers(Http1HeaderList headers)
    {
        for (var i = headers.IndexOf(Http1KnownHeader.TE); i >= 0; i = headers.IndexOf("te"u8, i + 1))
        {
            var rest = headers.GetValue(i);
            while (!rest.IsEmpty)
            {
                var comma = rest.IndexOf((byte)',');
                var item = comma < 0 ? rest : rest[..comma];
                rest = comma < 0 ? default : rest[(comma + 1)..];
                var semi = item.IndexOf((byte)';');
                if (semi >= 0)
                {
                    item = item[..semi];
                }

                if (System.Text.Ascii.EqualsIgnoreCase(item.Trim(" \t"u8), "trailers"u8))
                {
                    return true;
                }
            }
        }

        return false;
    }

    private void WriteResponseHead(PipeWriter output, HeaderMutations mutations, bool keepAlive, bool dechunk)
    {
        var writer = _responseHeadWriter.Start(output);
        var head = _response;
        Http1HeadWriter.WriteStatusLine(writer, Http1Version.Http11, head.StatusCode, head.ReasonPhrase);
        WriteFields(writer, head.Headers, mutations);
        if (head.BodyKind == Http1BodyKind.Chunked && !dechunk)
        {
            writer.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        if (!keepAlive)
        {
            writer.Write("Connection: close\r\n"u8);
        }
        else if (_request.Version == Http1Version.Http10)
        {
            writer.Write("Connection: keep-alive\r\n"u8);
        }

        Http1HeadWriter.WriteEndOfHead(writer);
        writer.Commit();
    }

    private static void WriteFields(IBufferWriter<byte> writer, Http1HeaderList headers, HeaderMutations mutations, byte[]? drop = null)
    {
        var sink = new TextFieldSink(writer);
        VisitFields(ref sink, headers, mutations, drop);
    }

    /// <summary>Where <see cref="VisitFields"/> puts the fields it forwards: HTTP/1.1 text, or an HTTP/2 field list.</summary>
    private interface IFieldSink
    {
        void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value);
    }

    private readonly struct TextFieldSink(IBufferWriter<byte> writer) : IFieldSink
    {
        public void Add(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Http1HeadWriter.WriteHeader(writer, name, value);
    }

    /// <summary>
    /// The fields that go on to the next hop, in order: the message's own minus hop-by-hop ones, the ones the route
    /// removes or sets, <paramref name="drop"/> and the mesh's own marker; then the route's set and added fields.
    /// </summary>
    private static void VisitFields<TSink>(ref TSink sink, Http1HeaderList headers, HeaderMutations mutations, byte[]? drop)
        where TSink : IFieldSink, allows ref struct
    {
        var check = !mutations.IsEmpty;
        for (var i = 0; i < headers.Count; i++)
        {
            if (headers.IsHopByHop(i))
            {
                continue;
            }

            var name = headers.GetName(i);
            if (check && mutations.IsRemoved(name))
            {
                continue;
            }

            if (drop is not null && name.Length == drop.Length && System.Text.Ascii.EqualsIgnoreCase(name, drop))
            {
                continue;
            }

            if (name.Length == MeshOrigProtoName.Length && System.Text.Ascii.EqualsIgnoreCase(name, MeshOrigProtoName))
            {
                continue;
            }

            sink.Add(name, headers.GetValue(i));
        }

        if (check)
        {
            foreach (var field in mutations.Sets)
            {
                sink.Add(field.Name, field.Value);
            }

            foreach (var field in mutations.Adds)
            {
                sink.Add(field.Name, field.Value);
            }
        }
    }

    // ---- 4. request body pump --------------------------------------------------------------------

    private void StartPump(PipeWriter upstreamOutput, ConnectionContext upstreamConnection)
    {
        _pumpStarted = true;
        _pumpCancelled = false;
        _bodyAbandoned = false;
        _pumpOutput = upstreamOutput;
        Volatile.Write(ref _lastRequestProgress, _time.GetTimestamp());
        // Stored, then awaited exactly once by SettlePumpAsync (pooled builder: no allocation per request body).
#pragma warning disable CA2012
        _pump = PumpRequestBodyAsync(upstreamOutput, upstreamConnection);
#pragma warning restore CA2012
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<PumpOutcome> PumpRequestBodyAsync(PipeWriter output, ConnectionContext upstreamConnection)
    {
        var input = _client.Input;
        var chunked = _request.BodyKind == Http1BodyKind.Chunked;
        if (!_bodyStarted)
        {
            // A retry's pump resumes where the previous try's stopped (the kept part was sent again before it).
            _bodyStarted = true;
            if (chunked)
            {
                _requestChunks.Reset();
            }
            else
            {
                _requestLength.Reset(_request.ContentLength);
            }
        }

        while (true)
        {
            if (_pumpCancelled)
            {
                return PumpOutcome.Cancelled;
            }

            ReadResult result;
            try
            {
                result = await input.ReadAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
            {
                // Client reset mid-body: the upstream must not take a truncated request for a whole one.
                upstreamConnection.Abort(new ConnectionAbortedException("The client went away in the middle of the request body."));
                _bodyBroken = true;
                return PumpOutcome.ClientClosed;
            }

            var buffer = result.Buffer;
            if (result.IsCanceled)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                if (_pumpCancelled || _cancelled)
                {
                    return PumpOutcome.Cancelled;
                }

                continue;
            }

            bool done;
            if (chunked)
            {
                SequencePosition consumed;
                SequencePosition examined;
                try
                {
                    done = CopyChunked(_requestChunks, buffer, output, dechunk: false, out consumed, out examined, ref _requestBytes);
                }
                catch (Http1ParseException e)
                {
                    input.AdvanceTo(buffer.End);
                    _bodyError = e;
                    _bodyBroken = true;
                    upstreamConnection.Abort(new ConnectionAbortedException("The client sent a malformed chunked body."));
                    return PumpOutcome.BadBody;
                }

                if (_replaying)
                {
                    _replay!.AppendBody(buffer.Slice(buffer.Start, consumed));
                }

                input.AdvanceTo(consumed, examined);
            }
            else
            {
                var slice = _requestLength.Read(buffer);
                Write(output, slice);
                _requestBytes += slice.Length;
                if (_replaying)
                {
                    _replay!.AppendBody(slice);
                }

                input.AdvanceTo(slice.End);
                done = _requestLength.IsComplete;
            }

            _bodyComplete = done;

            FlushResult flush;
            try
            {
                flush = await output.FlushAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
            {
                return PumpOutcome.UpstreamFailed;
            }

            if (flush.IsCanceled)
            {
                return PumpOutcome.Cancelled;
            }

            if (flush.IsCompleted)
            {
                return PumpOutcome.UpstreamFailed;
            }

            Volatile.Write(ref _lastRequestProgress, _time.GetTimestamp());
            if (done)
            {
                return PumpOutcome.Completed;
            }

            if (result.IsCompleted)
            {
                upstreamConnection.Abort(new ConnectionAbortedException("The client closed in the middle of the request body."));
                _bodyBroken = true;
                return PumpOutcome.ClientClosed;
            }
        }
    }

    /// <summary>Waits for the pump to end (stopping it first when <paramref name="cancel"/> and it still runs).</summary>
    private async ValueTask<PumpOutcome> SettlePumpAsync(bool cancel)
    {
        if (!_pumpStarted)
        {
            return PumpOutcome.Completed;
        }

        if (cancel && !_pump.IsCompleted)
        {
            _pumpCancelled = true;
            _client.Input.CancelPendingRead();
            _pumpOutput?.CancelPendingFlush();
        }

        _pumpStarted = false;
        _pumpOutput = null;
        return await _pump.ConfigureAwait(false);
    }

    /// <summary>
    /// Decodes chunked framing from <paramref name="buffer"/> and writes it on: the validated raw bytes (size lines,
    /// extensions, data, trailers) or, when <paramref name="dechunk"/>, only the payload. True when the body ended.
    /// </summary>
    private static bool CopyChunked(ChunkedBodyReader reader, in ReadOnlySequence<byte> buffer, PipeWriter output, bool dechunk, out SequencePosition consumed, out SequencePosition examined, ref long payloadBytes)
    {
        var rest = buffer;
        while (true)
        {
            var result = reader.Read(rest, out var data, out var position);
            if (dechunk)
            {
                if (result == ChunkedReadResult.Data)
                {
                    Write(output, data);
                }
            }
            else
            {
                Write(output, rest.Slice(rest.Start, position));
            }

            if (result == ChunkedReadResult.Data)
            {
                payloadBytes += data.Length;
            }

            rest = rest.Slice(position);
            if (result == ChunkedReadResult.Completed)
            {
                consumed = position;
                examined = position;
                return true;
            }

            if (result == ChunkedReadResult.NeedMoreData)
            {
                consumed = position;
                examined = buffer.End;
                return false;
            }
        }
    }

    private static void Write(PipeWriter output, in ReadOnlySequence<byte> data)
    {
        if (data.IsSingleSegment)
        {
            output.Write(data.FirstSpan);
            return;
        }

        foreach (var segment in data)
        {
            output.Write(segment.Span);
        }
    }

    // ---- 5. response head ------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ResponseOutcome> ReadFinalResponseHeadAsync(PipeReader input)
    {
        // The response timer was armed by AttemptAsync when the request head left.
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
                {
                    return ResponseOutcome.Reset;
                }

                var buffer = result.Buffer;
                if (result.IsCanceled && (_responseTimedOut || _cancelled))
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    return _responseTimedOut ? ResponseOutcome.Timeout : ResponseOutcome.Cancelled;
                }

                if (_connection?.Connection is Http2UpstreamExchange exchange && exchange.TryTakeTypedResponse(_response))
                {
                    // The exchange handed the head over typed (Http1ForwardingSession.Http2Head.cs): nothing of it is in
                    // the pipe, which carries only the body, framed as _response says.
                    _responseBytesSeen = true;
                    _responseHeadEnd = buffer.Start;
                    return ResponseOutcome.Parsed;
                }

                if (result.IsCanceled)
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }

                if (!buffer.IsEmpty)
                {
                    _responseBytesSeen = true;
                }

                bool parsed;
                SequencePosition consumed;
                try
                {
                    parsed = _forwarder.ResponseParser.TryParse(buffer, _request.Method, _response, out consumed);
                }
                catch (Http1ParseException e)
                {
                    input.AdvanceTo(buffer.End);
                    _badResponseReason = e.Reason;
                    return ResponseOutcome.BadResponse;
                }

                if (!parsed)
                {
                    if (result.IsCompleted)
                    {
                        input.AdvanceTo(buffer.End);
                        return ResponseOutcome.Closed;
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }

                if (!_response.IsInterim)
                {
                    _responseHeadEnd = consumed;
                    return ResponseOutcome.Parsed;
                }

                var relay = _request.Version == Http1Version.Http11
                    && (_response.StatusCode != 100 || (_request.ExpectContinue && !_sent100));
                if (relay)
                {
                    // 100 only when the client asked for it (and once); other 1xx (103 Early Hints...) to 1.1 clients.
                    _sent100 |= _response.StatusCode == 100;
                    Http1HeadWriter.WriteStatusLine(_client.Output, Http1Version.Http11, _response.StatusCode, _response.ReasonPhrase);
                    WriteFields(_client.Output, _response.Headers, HeaderMutations.None);
                    Http1HeadWriter.WriteEndOfHead(_client.Output);
                }

                input.AdvanceTo(consumed);
                if (relay)
                {
                    await FlushClientAsync().ConfigureAwait(false);
                }
            }
        }
        finally
        {
            DisarmResponseTimer();
        }
    }

    // ---- 6. tunnel -------------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> TunnelAsync(PooledConnection connection, HeaderMutations responseMutations)
    {
        var upstream = connection.Connection.Transport;
        var output = _client.Output;
        var head = _response;
        Http1HeadWriter.WriteStatusLine(output, Http1Version.Http11, head.StatusCode, head.ReasonPhrase);
        WriteFields(output, head.Headers, responseMutations);
        if (head.StatusCode == 101)
        {
            output.Write("Connection: upgrade\r\n"u8);
            Http1HeadWriter.WriteHeader(output, "Upgrade"u8, head.Upgrade);
        }

        Http1HeadWriter.WriteEndOfHead(output);
        // Bytes after the head (already buffered on either side) stay in the pipes and go through the tunnel.
        upstream.Input.AdvanceTo(_responseHeadEnd);
        if (_pumpStarted && await SettlePumpAsync(cancel: false).ConfigureAwait(false) != PumpOutcome.Completed)
        {
            _pool.Return(connection, reusable: false);
            _error = ProxyErrors.ClientClosed;
            return false;
        }

        ConsumeRequestHead();
        if (!await FlushClientAsync().ConfigureAwait(false))
        {
            _pool.Return(connection, reusable: false);
            _error = ProxyErrors.ClientClosed;
            return false;
        }

        var result = await _forwarder.Tunnel.ForwardAsync(_client, upstream, _forwarder.TunnelOptions, null, _cancellationToken).ConfigureAwait(false);
        _requestBytes = result.BytesToUpstream;
        _responseBytes = result.BytesToDownstream;
        _error = result.Outcome switch
        {
            TcpForwardOutcome.UpstreamReset => ProxyErrors.UpstreamReset,
            TcpForwardOutcome.DownstreamReset => ProxyErrors.ClientClosed,
            _ => null,
        };

        // The upstream connection carried a tunnel: never reusable.
        _pool.Return(connection, reusable: false);
        return false;
    }

    // ---- 7. response body ------------------------------------------------------------------------

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<BodyOutcome> ForwardResponseBodyAsync(PipeReader input, PipeWriter output, bool dechunk)
    {
        var kind = _response.BodyKind;
        if (kind == Http1BodyKind.None || (kind == Http1BodyKind.ContentLength && _response.ContentLength == 0))
        {
            return await FlushClientAsync().ConfigureAwait(false) ? BodyOutcome.Completed : BodyOutcome.ClientClosed;
        }

        if (kind == Http1BodyKind.ContentLength)
        {
            _responseLength.Reset(_response.ContentLength);
        }
        else if (kind == Http1BodyKind.Chunked)
        {
            _responseChunks.Reset();
        }

        while (true)
        {
            if (!input.TryRead(out var result))
            {
                // Nothing buffered: send what we have (at first, the head) before waiting.
                if (!await FlushClientAsync().ConfigureAwait(false))
                {
                    return BodyOutcome.ClientClosed;
                }

                try
                {
                    result = await input.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
                {
                    return BodyOutcome.UpstreamReset;
                }
            }

            var buffer = result.Buffer;
            if (result.IsCanceled)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                if (_cancelled)
                {
                    return BodyOutcome.Cancelled;
                }

                if (_streamTimeoutError is not null)
                {
                    return BodyOutcome.TimedOut;
                }

                continue;
            }

            bool done;
            switch (kind)
            {
                case Http1BodyKind.ContentLength:
                    var slice = _responseLength.Read(buffer);
                    Write(output, slice);
                    _responseBytes += slice.Length;
                    input.AdvanceTo(slice.End);
                    done = _responseLength.IsComplete;
                    break;
                case Http1BodyKind.Chunked:
                    SequencePosition consumed;
                    SequencePosition examined;
                    try
                    {
                        done = CopyChunked(_responseChunks, buffer, output, dechunk, out consumed, out examined, ref _responseBytes);
                    }
                    catch (Http1ParseException e)
                    {
                        input.AdvanceTo(buffer.End);
                        _badResponseReason = e.Reason;
                        return BodyOutcome.BadResponse;
                    }

                    input.AdvanceTo(consumed, examined);
                    break;
                default:
                    Write(output, buffer);
                    _responseBytes += buffer.Length;
                    input.AdvanceTo(buffer.End);
                    done = result.IsCompleted;
                    break;
            }

            if (!await FlushClientAsync().ConfigureAwait(false))
            {
                return BodyOutcome.ClientClosed;
            }

            NoteResponseProgress();
            if (done)
            {
                return BodyOutcome.Completed;
            }

            if (result.IsCompleted)
            {
                return BodyOutcome.UpstreamClosed;
            }
        }
    }

    // ---- proxy-made responses --------------------------------------------------------------------

    /// <summary>Answers the request itself; true when the client connection stays usable.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> RespondAsync(int status, string error, string sentence, bool forceClose = false, int grpcStatus = -1)
    {
        // A request body nobody read leaves the connection out of step: close it.
        var unreadBody = _request.BodyKind == Http1BodyKind.Chunked || (_request.BodyKind == Http1BodyKind.ContentLength && _request.ContentLength > 0);
        var keepAlive = _request.KeepAlive && !unreadBody && !forceClose && !_draining;
        _status = status;
        _error = error;
        _proxyMade = true;
        Log.ProxyResponse(_forwarder.Logger, status, error, sentence);
        ConsumeRequestHead();
        if (_grpc)
        {
            // A gRPC client cannot read an HTTP error page: the failure goes out as the call's status.
            _status = 200;
            ProxyResponse.WriteGrpc(_client.Output, status, error, sentence, close: !keepAlive, grpcStatus);
        }
        else
        {
            ProxyResponse.Write(_client.Output, status, error, sentence, close: !keepAlive,
                http10KeepAlive: keepAlive && _request.Version == Http1Version.Http10, omitBody: _request.Method == Http1Method.Head, extraHeader: _challenge);
        }

        return await FlushClientAsync().ConfigureAwait(false) && keepAlive;
    }

    private ValueTask<bool> RespondConnectFailureAsync(ConnectFailure failure, bool hasBody)
    {
        var upstream = $"upstream {failure.Destination} of service {_service}";
        return failure.Cause switch
        {
            ConnectFailureCause.Refused => RespondAsync(502, ProxyErrors.UpstreamRefused, $"{upstream} refused the connection", hasBody),
            ConnectFailureCause.Timeout => RespondAsync(504, ProxyErrors.UpstreamConnectTimeout, $"{upstream} did not accept the connection within the connect timeout ({failure.Detail})", hasBody),
            ConnectFailureCause.PoolExhausted => RespondAsync(503, ProxyErrors.PoolExhausted, $"{upstream} has no free connection: its pool is at its limit", hasBody),
            ConnectFailureCause.ProtocolError => RespondAsync(502, ProxyErrors.UpstreamProtocol, $"{upstream} answered, but {failure.Reason}", hasBody),
            ConnectFailureCause.Tls => RespondAsync(502, ProxyErrors.UpstreamTls, $"the TLS handshake with {upstream} failed: {failure.Detail}", hasBody),
            ConnectFailureCause.Overflow => RespondConnectionOverflowAsync(failure, hasBody),
            _ => RespondAsync(502, ProxyErrors.UpstreamConnectError, $"connecting to {upstream} failed: {failure.Reason}", hasBody),
        };
    }

    private ValueTask<bool> RespondUpstreamFailureAsync(ResponseOutcome outcome, bool hasBody)
    {
        var upstream = $"upstream {_endpoint} of service {_service}";
        return outcome switch
        {
            ResponseOutcome.Timeout when TimeoutNamed => RespondTimeoutAsync(hasBody),
            ResponseOutcome.Timeout when _deadlineExpired => RespondAsync(504, ProxyErrors.DeadlineExceeded,
                _rentExpired
                    ? $"{upstream} could not be reached (connect, pool wait or HTTP/2 handshake) within the call's grpc-timeout of {_grpcTimeout.TotalMilliseconds:0} ms"
                    : $"{upstream} sent no response head within the call's grpc-timeout of {_grpcTimeout.TotalMilliseconds:0} ms", hasBody),
            ResponseOutcome.Timeout => RespondTimeoutAsync(hasBody),
            ResponseOutcome.BadResponse => RespondAsync(502, ProxyErrors.UpstreamBadResponse,
                $"{upstream} sent a response that breaks HTTP/1.1 rules ({_badResponseReason})", hasBody),
            ResponseOutcome.Closed or ResponseOutcome.Reset when _upstreamFailure is { } failure => RespondAsync(502, ProxyErrors.UpstreamReset,
                $"{upstream} failed before sending a complete response head: {failure}", hasBody),
            ResponseOutcome.Closed => RespondAsync(502, ProxyErrors.UpstreamClosed,
                $"{upstream} closed the connection before sending a complete response head", hasBody),
            ResponseOutcome.Cancelled => CancelledAsync(),
            _ => RespondAsync(502, ProxyErrors.UpstreamReset,
                $"{upstream} reset the connection before sending a complete response head", hasBody),
        };
    }

    private ValueTask<bool> CancelledAsync()
    {
        _error = ProxyErrors.ClientClosed;
        return ValueTask.FromResult(false);
    }

    private ValueTask<bool> RespondBadBodyAsync()
    {
        var reason = _bodyError?.Reason ?? "invalid_chunk";
        return RespondAsync(400, ProxyErrors.BadRequest,
            $"listener {_forwarder.Listener} refused the request body: it breaks HTTP/1.1 chunked framing ({reason})", forceClose: true);
    }

    private async ValueTask<bool> FlushClientAsync()
    {
        if (_laneHeadToAnnounce is { } lane)
        {
            // A typed head for an HTTP/2 lane: a flush carrying body bytes wakes its pump by itself; with none the
            // pump's read is woken empty to take the head.
            _laneHeadToAnnounce = null;
            if (_client.Output.UnflushedBytes == 0)
            {
                lane.ResponseReader.CancelPendingRead();
            }
        }

        try
        {
            var flush = await _client.Output.FlushAsync().ConfigureAwait(false);
            return !flush.IsCompleted && !flush.IsCanceled;
        }
        catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
        {
            return false;
        }
    }

    private static async ValueTask<bool> FlushUpstreamAsync(PipeWriter output)
    {
        try
        {
            var flush = await output.FlushAsync().ConfigureAwait(false);
            return !flush.IsCompleted && !flush.IsCanceled;
        }
        catch (Exception ex) when (ex is IOException or ConnectionAbortedException or ObjectDisposedException or InvalidOperationException)
        {
            return false;
        }
    }

    // ---- record ----------------------------------------------------------------------------------

    private void BeginRequest()
    {
        _requestStart = _time.GetTimestamp();
        _upstreamFailure = null;
        _laneHeadToAnnounce = null;
        _policy = null;
        _subjectHeader = null;
        _subjectValue = null;
        _challenge = null;
        _grpc = false;
        _deadline = 0;
        _deadlineExpired = false;
        _rentExpired = false;
        BeginTimeouts();
        _service = "unknown";
        _subset = null;
        _route = "";
        _routed = false;
        _endpoint = null;
        _attempts = 0;
        _retries = 0;
        _retryPolicy = null;
        _retryService = null;
        _reused = false;
        _requestBytes = 0;
        _responseBytes = 0;
        _status = 0;
        _upstreamDuration = null;
        _error = null;
        _proxyMade = false;
        _upstreamTargetLength = -1;
        _requestIdLength = 0;
        _requestIdGenerated = false;
        _sent100 = false;
        _pumpStarted = false;
        _replaying = false;
        _bodyStarted = false;
        _bodyComplete = false;
        _bodyBroken = false;
        _bodyAbandoned = false;
        _connection = null;
        _pickedEndpoint = null;
        _bodyError = null;
        _badResponseReason = null;
        _methodLength = 0;
        _targetLength = 0;
        _authorityLength = 0;
        _version = Http1Version.Http11;
        if (!_requestHeadConsumed)
        {
            CopyRecordFields();
        }
    }

    private void CopyRecordFields()
    {
        var head = _request;
        var method = head.MethodBytes;
        var target = head.Target;
        var authority = head.HasHost ? head.Host : head.TargetForm == Http1TargetForm.Authority ? target : default;
        var needed = method.Length + target.Length + authority.Length;
        if (_recordScratch is null || _recordScratch.Length < needed)
        {
            if (_recordScratch is not null)
            {
                ArrayPool<byte>.Shared.Return(_recordScratch);
            }

            // Once per connection (grows only for an unusually long target).
            _recordScratch = ArrayPool<byte>.Shared.Rent(Math.Max(256, needed));
        }

        var span = _recordScratch.AsSpan();
        method.CopyTo(span);
        target.CopyTo(span[method.Length..]);
        authority.CopyTo(span[(method.Length + target.Length)..]);
        _methodLength = method.Length;
        _targetLength = target.Length;
        _authorityLength = authority.Length;
        _version = head.Version;
    }

    private void CompleteRequest()
    {
        var scratch = _recordScratch.AsSpan();
        var record = new HttpRequestRecord
        {
            Listener = _forwarder.Listener,
            Service = _service,
            Subset = _subset,
            Route = _route,
            Routed = _routed,
            Method = scratch[.._methodLength],
            Target = scratch.Slice(_methodLength, _targetLength),
            Authority = scratch.Slice(_methodLength + _targetLength, _authorityLength),
            // Requests of HTTP/2 streams reach this session through a lane: record the client's protocol.
            Protocol = _isHttp2Lane ? "HTTP/2"u8 : _version == Http1Version.Http10 ? "HTTP/1.0"u8 : "HTTP/1.1"u8,
            RequestId = _requestId.AsSpan(0, _requestIdLength),
            StatusCode = _status,
            RequestBytes = _requestBytes,
            ResponseBytes = _responseBytes,
            Duration = _time.GetElapsedTime(_requestStart),
            UpstreamDuration = _upstreamDuration,
            Endpoint = _endpoint,
            Client = _downstream.RemoteEndPoint,
            Error = _error,
            ProxyMade = _proxyMade,
            Attempts = _attempts,
            ReusedConnection = _reused,
            Policy = _policy,
            Limit = RefusingLimit(),
            PeerIdentity = _peer?.PeerIdentity,
            Transport = _peer?.Transport,
        };
        _observer.OnRequestCompleted(in record);
    }

    // ---- timers and cancellation -----------------------------------------------------------------

    private void ArmIdleTimer()
    {
        if (_idleTimer is null)
        {
            return;
        }

        _idleTimedOut = false;
        Volatile.Write(ref _idleSince, _time.GetTimestamp());
        _idleArmed = true;
        if (Interlocked.Exchange(ref _idleScheduled, 1) == 0)
        {
            ChangeTimer(_idleTimer, IdleLimit);
        }
    }

    private void DisarmIdleTimer() => _idleArmed = false;

    private void OnIdleTimer()
    {
        while (true)
        {
            if (!_idleArmed)
            {
                // Disarmed: go idle, unless an arm raced with us and found the timer still scheduled.
                Volatile.Write(ref _idleScheduled, 0);
                if (!_idleArmed || Interlocked.Exchange(ref _idleScheduled, 1) != 0)
                {
                    return;
                }

                continue;
            }

            var limit = IdleLimit;
            if (limit == Timeout.InfiniteTimeSpan)
            {
                // No idle timeout (woken early by a drain that has not shortened it yet): go idle.
                Volatile.Write(ref _idleScheduled, 0);
                return;
            }

            var elapsed = _time.GetElapsedTime(Volatile.Read(ref _idleSince));
            if (elapsed >= limit)
            {
                Volatile.Write(ref _idleScheduled, 0);
                _idleTimedOut = true;
                _client.Input.CancelPendingRead();
                return;
            }

            ChangeTimer(_idleTimer!, limit - elapsed);
            return;
        }
    }

    private void ArmResponseTimer(PipeReader input, long headWritten)
    {
        _responseTimedOut = false;
        _timeoutError = null;
        if (_responseTimer is null)
        {
            _awaitingResponse = input;
            return;
        }

        Volatile.Write(ref _responseClockStart, headWritten);
        _awaitingResponse = input;
        // A timer still scheduled from an earlier request keeps its due time (it re-checks when it fires), unless
        // this call's deadline or its route's shorter timeouts may come first.
        var limit = RelativeResponseLimit(out _);
        if (Interlocked.Exchange(ref _responseScheduled, 1) == 0 || _deadline != 0 || limit != DefaultResponseLimit)
        {
            ChangeTimer(_responseTimer, DueIn(limit));
        }
    }

    /// <summary>The earlier of <paramref name="due"/> and the gRPC deadline (if any) from now.</summary>
    private TimeSpan DueIn(TimeSpan due)
    {
        var deadline = _deadline;
        if (deadline == 0)
        {
            return due;
        }

        var left = TimeSpan.FromSeconds((double)(deadline - _time.GetTimestamp()) / _time.TimestampFrequency);
        left = left < TimeSpan.Zero ? TimeSpan.Zero : left;
        return due == Timeout.InfiniteTimeSpan || left < due ? left : due;
    }

    private void DisarmResponseTimer() => _awaitingResponse = null;

    private void OnResponseTimer()
    {
        while (true)
        {
            var input = _awaitingResponse;
            if (input is null)
            {
                Volatile.Write(ref _responseScheduled, 0);
                if (_awaitingResponse is null || Interlocked.Exchange(ref _responseScheduled, 1) != 0)
                {
                    return;
                }

                continue;
            }

            // The gRPC deadline is absolute; the response timeout's clock restarts with every piece of request body
            // sent: a progressing upload is not a silent upstream.
            var deadline = _deadline;
            if (deadline != 0 && _time.GetTimestamp() >= deadline)
            {
                Volatile.Write(ref _responseScheduled, 0);
                _deadlineExpired = true;
                _responseTimedOut = true;
                input.CancelPendingRead();
                return;
            }

            // The per-try (response) and stream idle timeouts count alike; the shorter is checked (Timeouts.cs).
            var left = Timeout.InfiniteTimeSpan;
            var limit = RelativeResponseLimit(out var error);
            if (limit != Timeout.InfiniteTimeSpan)
            {
                var since = Math.Max(Volatile.Read(ref _responseClockStart), _pumpStarted ? Volatile.Read(ref _lastRequestProgress) : 0);
                var elapsed = _time.GetElapsedTime(since);
                if (elapsed >= limit)
                {
                    Volatile.Write(ref _responseScheduled, 0);
                    _timeoutError = error;
                    _responseTimedOut = true;
                    input.CancelPendingRead();
                    return;
                }

                left = limit - elapsed;
            }

            ChangeTimer(_responseTimer!, DueIn(left));
            return;
        }
    }

    private static void ChangeTimer(ITimer timer, TimeSpan dueTime)
    {
        try
        {
            timer.Change(dueTime, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
            // The connection ended meanwhile.
        }
    }

    private void OnCancelled()
    {
        _cancelled = true;
        _client.Input.CancelPendingRead();
        _awaitingResponse?.CancelPendingRead();
        // Also the response body's reads and the client flushes: a cancelled stream (an HTTP/2 client's RST_STREAM)
        // must not keep pumping a long response, and its upstream exchange is then returned unreusable (closed or
        // reset), which is how the upstream learns the call is over. Should the exchange have just ended, the
        // spurious cancel only makes the pool's next liveness check discard that idle connection.
        _connection?.Connection.Transport.Input.CancelPendingRead();
        _client.Output.CancelPendingFlush();
        try
        {
            _rentDeadline?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The rent just ended and let its source go.
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3101, Level = LogLevel.Debug, Message = "Listener {Listener} refused a request: {Reason}")]
        public static partial void BadRequest(ILogger logger, string listener, string reason);

        [LoggerMessage(EventId = 3102, Level = LogLevel.Debug, Message = "Proxy-made {Status} ({Error}): {Sentence}")]
        public static partial void ProxyResponse(ILogger logger, int status, string error, string sentence);

        [LoggerMessage(EventId = 3103, Level = LogLevel.Debug, Message = "Reused connection to {Endpoint} was closed before answering; retrying on a new connection")]
        public static partial void Retrying(ILogger logger, UpstreamAddress endpoint);

        [LoggerMessage(EventId = 3120, Level = LogLevel.Debug, Message = "Retry {Retry} of {MaxRetries}: {Failed} failed, trying {Next}")]
        public static partial void RetryingPolicy(ILogger logger, UpstreamAddress failed, UpstreamAddress next, int retry, int maxRetries);

        [LoggerMessage(EventId = 3121, Level = LogLevel.Debug, Message = "Service {Service}: no retry after {Reason}: the retry budget is spent")]
        public static partial void RetryBudgetExhausted(ILogger logger, string service, string reason);

        [LoggerMessage(EventId = 3104, Level = LogLevel.Debug, Message = "Response from {Endpoint} broke off after its head was sent ({Error}); resetting the client connection")]
        public static partial void ResponseAborted(ILogger logger, UpstreamAddress endpoint, string error);

        [LoggerMessage(EventId = 3105, Level = LogLevel.Error, Message = "Unexpected failure while forwarding HTTP/1.1 on listener {Listener}")]
        public static partial void Unexpected(ILogger logger, string listener, Exception exception);
    }
}
