using System.Net;
using Proxy.Core.Balancing;
using Proxy.Core.Detection;
using Proxy.Core.Tcp;

namespace Proxy.Core.Configuration;

// The effective configuration: immutable records, validated as a whole by ConfigLoader before any
// listener binds. A reload (a later issue) builds a new ProxyConfig and swaps it atomically.

public sealed record ProxyConfig
{
    /// <summary>Outbound capture listener (iptables OUTPUT redirects here). Null when off.</summary>
    public IPEndPoint? OutboundListen { get; init; } = new(IPAddress.IPv6Any, 15001);

    /// <summary>Inbound capture listener (iptables PREROUTING redirects here). Null when off.</summary>
    public IPEndPoint? InboundListen { get; init; } = new(IPAddress.IPv6Any, 15006);

    /// <summary>Admin listener (/ready, /metrics, /config). Null when off.</summary>
    public IPEndPoint? AdminListen { get; init; } = new(IPAddress.Loopback, 15000);

    public TransportConfig Transport { get; init; } = new();

    public TcpConfig Tcp { get; init; } = new();

    public DetectConfig Detect { get; init; } = new();

    public HttpConfig Http { get; init; } = new();

    /// <summary>HTTP/2 clients (h2c): streams, windows, header list limit.</summary>
    public Http2Config Http2 { get; init; } = new();

    /// <summary>TLS termination and origination settings shared by every listener and service; file section <c>tls</c>.</summary>
    public TlsConfig Tls { get; init; } = new();

    /// <summary>Mesh mTLS between sidecars: the workload identity, trust bundle and inbound modes; file section <c>mesh</c>.</summary>
    public MeshConfig Mesh { get; init; } = new();

    /// <summary>DNS discovery: the servers asked and the query timeout; file section <c>dns</c>.</summary>
    public DnsConfig Dns { get; init; } = new();

    /// <summary>Explicit (non-captured) listeners, each forwarding to one service.</summary>
    public IReadOnlyList<ListenerConfig> Listeners { get; init; } = [];

    public IReadOnlyList<ServiceConfig> Services { get; init; } = [];

    /// <summary>Authorization policies (file section <c>authorization</c>); reloaded when the config file changes.</summary>
    public AuthorizationConfig Authorization { get; init; } = new();

    /// <summary>Minimum log level: trace, debug, information, warning, error, critical, none.</summary>
    public string LogLevel { get; init; } = "information";

    /// <summary>
    /// Longest a graceful drain (SIGTERM, admin POST /drain) waits for open connections to finish before it closes
    /// the rest and the process exits. 25 s: inside Kubernetes' default terminationGracePeriodSeconds (30 s).
    /// </summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(25);
}

/// <summary>Tuning of our socket transport (see Proxy.Core.Transport).</summary>
public sealed record TransportConfig
{
    public int ReadBufferSize { get; init; } = 32 * 1024;

    /// <summary>IO queues the transport schedules on; 0 schedules on the thread pool.</summary>
    public int IoQueues { get; init; } = Math.Min(Environment.ProcessorCount, 16);

    /// <summary>Event-loop threads (Linux epoll) that drive every socket; 0 uses .NET's socket engine.</summary>
    public int IoThreads { get; init; } = 1;

    /// <summary>The event loops issue each pass's socket calls with one io_uring submission, where io_uring is available.</summary>
    public bool IoUring { get; init; } = true;

    public int Backlog { get; init; } = 512;

    public bool NoDelay { get; init; } = true;

    /// <summary>Run socket completions, pipe continuations and new connections' start inline (no thread hop). Nothing on that path may block.</summary>
    public bool InlineScheduling { get; init; } = true;
}

/// <summary>Opaque TCP forwarding.</summary>
public sealed record TcpConfig
{
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Maximum concurrent downstream connections per listener; 0 means unlimited.</summary>
    public int MaxConnections { get; init; }

    public SpliceMode Splice { get; init; } = SpliceMode.Auto;
}

/// <summary>Protocol detection on the capture listeners (see Proxy.Core.Detection).</summary>
public sealed record DetectConfig
{
    /// <summary>How long to wait for a client's first bytes before forwarding as opaque TCP.</summary>
    public TimeSpan Timeout { get; init; } = new ProtocolDetectorOptions().Timeout;

    /// <summary>Original destination ports that skip detection (server-speaks-first protocols), sorted, distinct.</summary>
    public IReadOnlyList<int> OpaquePorts { get; init; } = ProtocolDetectorOptions.DefaultOpaquePorts;
}

/// <summary>
/// An explicit listener: a client dials <see cref="Address"/> on purpose (no capture). With protocol tcp every
/// connection goes to <see cref="Service"/>; with protocol http each request is routed by <see cref="Routes"/>
/// (first match wins; no route matched: a proxy-made 404), or to <see cref="Service"/> when there are no routes.
/// <see cref="Service"/> is empty when the listener only routes.
/// </summary>
public sealed record ListenerConfig(string Name, IPEndPoint Address, string Service)
{
    /// <summary>Config key <c>protocol</c>: tcp (opaque) or http (HTTP/1.1 forwarding). Default: http when routes are given, else tcp.</summary>
    public ListenerProtocol Protocol { get; init; } = ListenerProtocol.Tcp;

    /// <summary>Config key <c>routes</c> (see <see cref="RouteConfigReader"/>).</summary>
    public IReadOnlyList<RouteConfig> Routes { get; init; } = [];

    /// <summary>
    /// Config key <c>sni</c>: TLS passthrough by server name (protocol tcp only). A ClientHello whose SNI matches goes to
    /// that route's service; no SNI, no match or not TLS goes to <see cref="Service"/>, or is closed when it is empty.
    /// </summary>
    public IReadOnlyList<SniRouteConfig> Sni { get; init; } = [];

    /// <summary>Config key <c>tls</c>: terminate TLS on this listener (null: plaintext).</summary>
    public ListenerTlsConfig? Tls { get; init; }

    /// <summary>Config key <c>authorization</c>: apply the top-level authorization policies to this listener's traffic.</summary>
    public bool Authorization { get; init; }

    /// <summary>Config key <c>jwt</c>: end-user JWT authentication for this listener's HTTP requests (routes may override).</summary>
    public JwtConfig? Jwt { get; init; }

    /// <summary>
    /// Config key <c>mesh</c> (strict or permissive): terminate mesh mTLS from peer sidecars on this listener (they dial it
    /// directly: no capture), then forward to <see cref="Service"/> as the listener's protocol would. Null: no mesh TLS.
    /// </summary>
    public MeshMode? Mesh { get; init; }
}

/// <summary>What an explicit listener speaks.</summary>
public enum ListenerProtocol
{
    /// <summary>Opaque TCP: bytes forwarded as they are to the listener's service.</summary>
    Tcp,

    /// <summary>HTTP/1.1: each request parsed, routed, balanced and forwarded over pooled upstream connections.</summary>
    Http,
}

/// <summary>HTTP forwarding (Proxy.Http.Forwarding): codec limits, upstream pools, response timeout, access log.</summary>
public sealed record HttpConfig
{
    /// <summary>Longest request line accepted; longer is answered 414. Flag <c>--http-max-request-line</c>.</summary>
    public int MaxRequestLineBytes { get; init; } = 8 * 1024;

    /// <summary>Most bytes of header fields accepted; more is answered 431. Flag <c>--http-max-header-bytes</c>.</summary>
    public int MaxHeaderBytes { get; init; } = 32 * 1024;

    /// <summary>Most header fields accepted; more is answered 431. Flag <c>--http-max-headers</c>.</summary>
    public int MaxHeaderCount { get; init; } = 100;

    /// <summary>How long to wait for the upstream's response head after the request head was sent; then 504. Zero: no limit.</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Idle keep-alive connection (downstream, between requests) closed after this long.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>The whole request, retries and response body included (routes: <c>timeouts.request</c>); infinite: none. Flag <c>--http-request-timeout</c>.</summary>
    public TimeSpan RequestTimeout { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>No byte either way on one request/response for this long aborts it (routes: <c>timeouts.idle</c>). Flag <c>--http-stream-idle-timeout</c>.</summary>
    public TimeSpan StreamIdleTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>A request head must arrive whole within this long of its first byte, else 408 (slowloris). Flag <c>--http-header-timeout</c>.</summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Upstream connections per endpoint at most (in use + idle); 0 = unlimited.</summary>
    public int PoolMaxConnections { get; init; }

    /// <summary>Idle pooled upstream connections kept per endpoint at most.</summary>
    public int PoolMaxIdle { get; init; } = 1024;

    /// <summary>HTTP/2 upstream connections per endpoint at most (each multiplexes many streams); 0 = unlimited.</summary>
    public int Http2PoolMaxConnections { get; init; } = 16;

    /// <summary>A pooled upstream connection idle longer than this is closed.</summary>
    public TimeSpan PoolIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>HTTP/2 upstream connections send a PING after this long without a received frame; infinite: off. Flag <c>--h2-keepalive-interval</c>.</summary>
    public TimeSpan Http2KeepaliveInterval { get; init; } = Http2KeepaliveConfig.DefaultInterval;

    /// <summary>An unanswered keepalive PING closes its HTTP/2 upstream connection after this long. Flag <c>--h2-keepalive-timeout</c>.</summary>
    public TimeSpan Http2KeepaliveTimeout { get; init; } = Http2KeepaliveConfig.DefaultTimeout;

    /// <summary>JSON access log: null (off), "stdout", or a file path. Flag <c>--access-log</c>.</summary>
    public string? AccessLog { get; init; }

    /// <summary>How request paths are normalized before routing, authorization and forwarding. Flag <c>--http-path-normalization</c>.</summary>
    public PathNormalization PathNormalization { get; init; } = PathNormalization.Base;

    /// <summary>
    /// Whether requests without <c>x-request-id</c> get one. Flag <c>--http-request-id</c>. Preserve by default: the
    /// proxy adds nothing to a request unless asked (Linkerd's way; Envoy generates by default).
    /// </summary>
    public RequestIdMode RequestId { get; init; } = RequestIdMode.Preserve;
}

/// <summary>What the proxy does about <c>x-request-id</c> (as Envoy's <c>generate_request_id</c>).</summary>
public enum RequestIdMode
{
    /// <summary>A request without <c>x-request-id</c> gets a new UUID (version 4) sent upstream; one that has it keeps it. Both are logged.</summary>
    Generate,

    /// <summary>No id is made; a request's own <c>x-request-id</c> goes on as sent and is logged.</summary>
    Preserve,
}

/// <summary>Request path normalization, as Istio's <c>meshConfig.pathNormalization</c> (same names, same default).</summary>
public enum PathNormalization
{
    /// <summary>Paths are routed, authorized and forwarded exactly as sent.</summary>
    None,

    /// <summary>RFC 3986: percent-encoded unreserved characters decoded, backslashes made slashes, dot segments removed; <c>%00</c> refused.</summary>
    Base,

    /// <summary><see cref="Base"/>, then runs of slashes merged into one.</summary>
    MergeSlashes,

    /// <summary><see cref="MergeSlashes"/>, with <c>%2F</c> and <c>%5C</c> decoded first.</summary>
    DecodeAndMergeSlashes,
}

/// <summary>HTTP/2 clients (h2c): what the proxy advertises in SETTINGS and enforces; file section <c>http2</c>.</summary>
public sealed record Http2Config
{
    /// <summary>SETTINGS_MAX_CONCURRENT_STREAMS; more streams are refused. Flag <c>--http2-max-concurrent-streams</c>.</summary>
    public int MaxConcurrentStreams { get; init; } = 100;

    /// <summary>Request body bytes a client may have in flight per stream (SETTINGS_INITIAL_WINDOW_SIZE). Flag <c>--http2-stream-window</c>.</summary>
    public int InitialStreamWindow { get; init; } = 256 * 1024;

    /// <summary>Request body bytes a client may have in flight per connection. Flag <c>--http2-connection-window</c>.</summary>
    public int InitialConnectionWindow { get; init; } = 1024 * 1024;

    /// <summary>Largest decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE); larger is answered 431. Flag <c>--http2-max-header-list</c>.</summary>
    public int MaxHeaderListSize { get; init; } = 64 * 1024;
}

/// <summary>
/// A service: its virtual addresses (what clients dial, e.g. a ClusterIP:port) and the endpoints
/// (instances) behind them. A captured connection whose original destination is one of the virtual
/// addresses is balanced across the endpoints; any other destination is passed through as it is.
/// </summary>
public sealed record ServiceConfig(string Name, IReadOnlyList<IPEndPoint> Addresses, IReadOnlyList<IPEndPoint> Endpoints)
{
    /// <summary>How connections (requests) are spread over the endpoints; config key <c>balancer</c>.</summary>
    public BalancerKind Balancer { get; init; } = BalancerKind.RoundRobin;

    /// <summary>What the ring hash balancer hashes; config key <c>hashOn</c>. Only set with <see cref="BalancerKind.RingHash"/>.</summary>
    public HashOn HashOn { get; init; } = HashOn.None;

    /// <summary>The endpoints' weights, parallel to <see cref="Endpoints"/>; empty means every weight is 1.</summary>
    public IReadOnlyList<int> Weights { get; init; } = [];

    /// <summary>Header or cookie name hashed when <see cref="HashOn"/> is Header or Cookie; config key <c>hashKey</c>.</summary>
    public string? HashKey { get; init; }

    /// <summary>Named subsets of the endpoints (e.g. v1, v2) that routes send to; config key <c>subsets</c>.</summary>
    public IReadOnlyList<SubsetConfig> Subsets { get; init; } = [];

    /// <summary>
    /// HTTP routes for requests to this service's virtual addresses (captured outbound traffic); config key
    /// <c>routes</c>. Empty: every request goes to the whole service.
    /// </summary>
    public IReadOnlyList<RouteConfig> Routes { get; init; } = [];

    /// <summary>
    /// The protocol HTTP requests are sent to this service's endpoints in; config key <c>upstreamProtocol</c>
    /// (<c>same</c>, <c>http1</c>, <c>http2</c>).
    /// </summary>
    public UpstreamProtocol UpstreamProtocol { get; init; } = UpstreamProtocol.Same;

    /// <summary>
    /// Config key <c>sni</c>: captured TLS connections to this service's addresses are routed by the ClientHello's server
    /// name to other services (passthrough, not terminated); no SNI or no match stays with this service.
    /// </summary>
    public IReadOnlyList<SniRouteConfig> Sni { get; init; } = [];

    /// <summary>Config key <c>tls</c>: speak TLS to the endpoints (origination); null: plaintext.</summary>
    public UpstreamTlsConfig? Tls { get; init; }

    /// <summary>Config key <c>mesh</c>: the endpoints run sidecars of this mesh: speak mesh mTLS to them; null: not meshed.</summary>
    public ServiceMeshConfig? Mesh { get; init; }

    /// <summary>Config key <c>retries</c>: the retry policy of requests to this service whose route has none; null: no retries.</summary>
    public RetryPolicyConfig? Retries { get; init; }

    /// <summary>Config key <c>retryBudget</c>: how many retries the service's requests may cause.</summary>
    public RetryBudgetConfig RetryBudget { get; init; } = new();

    /// <summary>Config key <c>outlierDetection</c>: eject endpoints that fail; null: off.</summary>
    public OutlierDetectionConfig? OutlierDetection { get; init; }

    /// <summary>Config key <c>healthCheck</c>: check the endpoints actively; null: off.</summary>
    public HealthCheckConfig? HealthCheck { get; init; }

    /// <summary>Config key <c>dns</c>: endpoints looked up in DNS (besides <see cref="Endpoints"/>, which may then be empty); null: static endpoints only.</summary>
    public ServiceDnsConfig? Dns { get; init; }

    /// <summary>Config key <c>circuitBreakers</c>: limits on connections and requests to the service; null: none.</summary>
    public CircuitBreakersConfig? CircuitBreakers { get; init; }

    /// <summary>Config key <c>rateLimit</c>: the local rate limit of requests to this service whose route has none; null: none.</summary>
    public RateLimitConfig? RateLimit { get; init; }

    /// <summary>Config key <c>http2Keepalive</c>: PINGs on HTTP/2 connections to the endpoints; null: the sidecar-wide defaults.</summary>
    public Http2KeepaliveConfig? Http2Keepalive { get; init; }

    /// <summary>The weight of endpoint <paramref name="index"/> (1 when no weights are given).</summary>
    public int WeightOf(int index) => Weights.Count == 0 ? 1 : Weights[index];
}

/// <summary>A named subset of a service's endpoints (each must be one of the service's endpoints); balanced like the service.</summary>
public sealed record SubsetConfig(string Name, IReadOnlyList<IPEndPoint> Endpoints);

/// <summary>The HTTP version spoken to a service's endpoints.</summary>
public enum UpstreamProtocol
{
    /// <summary>As the client spoke: HTTP/2 (h2c) for HTTP/2 clients, HTTP/1.1 for HTTP/1.x clients (transparent).</summary>
    Same,

    /// <summary>Always HTTP/1.1 (HTTP/2 clients are translated).</summary>
    Http1,

    /// <summary>Always HTTP/2 with prior knowledge (h2c), many requests multiplexed on one connection per endpoint.</summary>
    Http2,
}

/// <summary>The key a hashing balancer uses. Opaque TCP knows only the source IP; HTTP adds a header or cookie.</summary>
public enum HashOn
{
    /// <summary>No key: a ring hash balancer places each connection at a random point.</summary>
    None,

    /// <summary>The client's IP address (not its port), so one client keeps reaching one endpoint.</summary>
    SourceIp,

    /// <summary>The value of the request header named by <see cref="ServiceConfig.HashKey"/> (HTTP only; absent: random point).</summary>
    Header,

    /// <summary>The value of the cookie named by <see cref="ServiceConfig.HashKey"/> (HTTP only; absent: random point).</summary>
    Cookie,
}

// --- TLS termination (listeners) and origination (services) ---

/// <summary>TLS settings that are not per listener or service; file section <c>tls</c>.</summary>
public sealed record TlsConfig
{
    /// <summary>A TLS handshake (either role) not finished within this is abandoned. Flag <c>--tls-handshake-timeout</c>.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Whether a terminating listener asks clients for a certificate (config key <c>clientCertificate</c>).</summary>
public enum TlsClientCertificateMode
{
    None,
    Optional,
    Required,
}

/// <summary>
/// A listener's <c>tls</c> object: terminate TLS with <see cref="CertificatePath"/>/<see cref="KeyPath"/> (PEM), offer
/// <see cref="Alpn"/>, then dispatch by what ALPN chose (h2: the HTTP/2 server; http/1.1 or none: the listener's protocol).
/// </summary>
public sealed record ListenerTlsConfig(string CertificatePath, string KeyPath)
{
    /// <summary>Key <c>alpn</c>: protocols offered in order. Default: h2, http/1.1 for protocol http; none for tcp.</summary>
    public IReadOnlyList<string> Alpn { get; init; } = [];

    /// <summary>Key <c>clientCertificate</c>: none, optional, required.</summary>
    public TlsClientCertificateMode ClientCertificate { get; init; } = TlsClientCertificateMode.None;

    /// <summary>Key <c>ca</c>: PEM bundle of the roots client certificates must chain to; null: the system trust store.</summary>
    public string? CaPath { get; init; }
}

/// <summary>
/// A service's <c>tls</c> object: originate TLS to its endpoints. Connections to them are pooled apart from
/// plaintext ones (a pool per service with TLS).
/// </summary>
public sealed record UpstreamTlsConfig
{
    /// <summary>Key <c>sni</c>: the server name sent and checked; null: none sent, the certificate must carry the endpoint's IP.</summary>
    public string? Sni { get; init; }

    /// <summary>Key <c>alpn</c>; null: from the upstream protocol (h2 for HTTP/2, http/1.1 for HTTP/1.1, none for opaque TCP).</summary>
    public IReadOnlyList<string>? Alpn { get; init; }

    /// <summary>Key <c>ca</c>: PEM bundle of trusted roots; null: the system trust store.</summary>
    public string? CaPath { get; init; }

    /// <summary>Keys <c>certificate</c> and <c>key</c>: the client certificate for endpoints that ask for one (mutual TLS).</summary>
    public string? CertificatePath { get; init; }

    public string? KeyPath { get; init; }

    /// <summary>Key <c>insecureSkipVerify</c>: accept any endpoint certificate (logged as a warning at start).</summary>
    public bool InsecureSkipVerify { get; init; }
}
