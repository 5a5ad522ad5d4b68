using System.Net;
using System.Net.Security;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Proxy.Core.Capture;
using Proxy.Core.Configuration;
using Proxy.Core.Detection;
using Proxy.Core.Discovery;
using Proxy.Core.Limits;
using Proxy.Core.Metrics;
using Proxy.Core.Tcp;
using Proxy.Core.Tcp.Splice;
using Proxy.Core.Transport;
using Proxy.Core.Upstream;
using Proxy.Http.Authorization;
using Proxy.Http.Forwarding;
using Proxy.Http.Http2.Server;
using Proxy.Http.Http2.Upstream;
using Proxy.Http.Http1;
using Proxy.Http.Routing;
using Proxy.Http.Telemetry;
using Proxy.Sidecar.Admin;
using Proxy.Tls.Passthrough;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;
using Proxy.Tls.Mesh;
using Proxy.Tls.Origination;
using Proxy.Tls.Termination;

namespace Proxy.Sidecar.App;

/// <summary>
/// Composes the sidecar: one Kestrel server over our socket transport, whose listeners are
/// connection middleware (Kestrel's HTTP stack serves only the admin listener):
/// <code>
///   outbound :15001 ─┐                  destination (original destination / service)
///   inbound  :15006 ─┼─ ListenerHandler ─ detect protocol (captured only, peek) ─┬─ HTTP/1.x: Http1Forwarder ─ UpstreamPool ─ upstream
///   explicit ...    ─┘                    (explicit: by its configured protocol) ├─ TLS + SNI routes: TlsPassthroughStage ─┐
///                                                                                └─ other:    TcpProxy ◄──────────────────┴─ upstream
///   explicit + tls ── TlsTerminator ── ALPN h2: Http2Server; http/1.1 or none: as its protocol
///   services with tls: their own TlsUpstreamConnector + pools (ServiceUpstreams), so TLS never shares a plaintext connection
///   admin    :15000 ── AdminApplication (/ready, /metrics, /config, /drain, /quitquitquit): a Kestrel server of its own
/// </code>
/// Lifecycle (Admin/SidecarLifecycle.cs): a stop request (signal, POST /drain, POST /quitquitquit) drains: the HTTP stages watch
/// <see cref="SidecarLifecycle.DrainToken"/>, the proxy's Kestrel server stops accepting and waits for its connections up to the
/// drain timeout; the admin server keeps answering (/ready 503) until the host is disposed.
/// </summary>
internal sealed partial class SidecarHost : IAsyncDisposable
{
    private readonly ProxyConfig _config;
    private readonly ILoggerFactory _loggerFactory;
    private readonly IOriginalDestinationResolver _resolver;
    private readonly List<(string Name, IPEndPoint Address, Microsoft.AspNetCore.Connections.ConnectionDelegate Application)> _proxyListeners = [];

    // The proxy listeners whose connections are served through their pipes alone: accepted without a .NET socket.
    private readonly HashSet<IPEndPoint> _socketlessListeners = new(ReferenceEqualityComparer.Instance);
    private ListenOptions? _adminListen;
    private ConnectionServer? _server;

    // The admin listener has a server of its own, so it can answer /ready 503 while the proxy's listeners drain.
    private readonly KestrelServerOptions _adminOptions = new() { AddServerHeader = false };
    private KestrelServer? _adminServer;
    private Task<DrainResult>? _stopped;
    private SocketTransportFactory? _transport;
    private UpstreamConnector? _connector;
    private UpstreamConnector? _inboundConnector;
    private SpliceForwarder? _splice;
    private UpstreamPool? _pool;
    private UpstreamPool? _inboundPool;
    private Http2UpstreamPool? _http2Pool;
    private Http2UpstreamPool? _inboundHttp2Pool;
    private readonly List<FileCertificateSource> _certificateSources = [];
    private FileMeshTrustSource? _meshTrust;
    private JsonAccessLog? _accessLog;
    private readonly List<IAsyncDisposable> _servicePools = [];

    // Authorization and JWT (issue 5): the policies shared by the inbound and opted-in listeners, the JWKS sources,
    // the config file watcher that swaps in new policies.
    private readonly ConfigSource? _source;
    private readonly List<JwksSource> _jwks = [];
    private ConfigReloader? _reloader;

    public SidecarHost(ProxyConfig config, ILoggerFactory loggerFactory, IOriginalDestinationResolver? resolver = null, ConfigSource? source = null)
    {
        _config = config;
        _loggerFactory = loggerFactory;
        _resolver = resolver ?? new SoOriginalDstResolver();
        _source = source;
        Metrics = new ProxyMetrics();
        Exporter = new PrometheusExporter(Metrics.Meter);
        Authorization = new AuthorizationState(new AuthorizationPolicies(config.Authorization), Metrics);
        Lifecycle = new SidecarLifecycle(Metrics.Meter);
    }

    /// <summary>Readiness, stop requests and the drain (see Admin/SidecarLifecycle.cs).</summary>
    public SidecarLifecycle Lifecycle { get; }

    /// <summary>Completes when a requested stop has drained the proxy's listeners (after <see cref="StartAsync"/>).</summary>
    public Task<DrainResult> Stopped => _stopped ?? throw new InvalidOperationException("The host has not started.");

    /// <summary>The authorization policies in force (swapped on reload).</summary>
    public AuthorizationState Authorization { get; }

    /// <summary>The config file watcher (null without a config file).</summary>
    public ConfigReloader? Reloader => _reloader;

    /// <summary>Tests only: called first for every accepted connection (e.g. to set an <c>IPeerIdentityFeature</c> before the TLS stage exists).</summary>
    internal Action<Microsoft.AspNetCore.Connections.ConnectionContext>? ConnectionHookForTests { get; init; }

    /// <summary>Tests only: the HTTP handler JWKS URLs are fetched with (e.g. trusting a test certificate).</summary>
    internal HttpMessageHandler? JwksHandlerForTests { get; init; }

    public ProxyMetrics Metrics { get; }

    public PrometheusExporter Exporter { get; }

    public Readiness Readiness => Lifecycle.Readiness;

    /// <summary>The bound address of each listener, by name (ports resolved when configured as 0).</summary>
    public IReadOnlyList<(string Name, EndPoint Address)> BoundListeners
    {
        get
        {
            var bound = _server?.EndPoints.ToList() ?? _proxyListeners.Select(static l => (l.Name, (EndPoint)l.Address)).ToList();
            if (_adminListen is not null)
            {
                bound.Add(("admin", _adminListen.EndPoint));
            }

            return bound;
        }
    }

    public EndPoint? AddressOf(string name) => BoundListeners.FirstOrDefault(l => l.Name == name).Address;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var transport = new SocketTransportOptions
        {
            ReadBufferSize = _config.Transport.ReadBufferSize,
            IoQueueCount = _config.Transport.IoQueues,
            IoThreads = _config.Transport.IoThreads,
            Backlog = _config.Transport.Backlog,
            NoDelay = _config.Transport.NoDelay,
            IoUring = _config.Transport.IoUring,
            InlineScheduling = _config.Transport.InlineScheduling,
        };
        var connectorOptions = new UpstreamConnectorOptions { ConnectTimeout = _config.Tcp.ConnectTimeout, NoDelay = _config.Transport.NoDelay, Transport = transport };
        _connector = new UpstreamConnector(connectorOptions, _loggerFactory);

        // Inbound connections go to the local app from 127.0.0.6 / ::6, which the capture rules let
        // through; dialled from any other source, the pod's own address would be captured again (a loop).
        _inboundConnector = new UpstreamConnector(
            connectorOptions with { SourceAddressV4 = InboundPassthrough.SourceV4, SourceAddressV6 = InboundPassthrough.SourceV6 },
            _loggerFactory);
        _splice = _config.Tcp.Splice == SpliceMode.Never ? null : new SpliceForwarder(logger: _loggerFactory.CreateLogger<SpliceForwarder>());
        var tcp = new TcpProxy(_connector, Metrics, _loggerFactory.CreateLogger<TcpProxy>());
        var inboundTcp = new TcpProxy(_inboundConnector, Metrics, _loggerFactory.CreateLogger<TcpProxy>());
        var tcpContext = new TcpProxyContext("", "")
        {
            ForwardOptions = new TcpForwardOptions { IdleTimeout = _config.Tcp.IdleTimeout },
            RawForwarder = _splice,
            SpliceMode = _config.Tcp.Splice,
        };
        var logger = _loggerFactory.CreateLogger("Proxy.Sidecar.Listener");

        // HTTP/1.1 stage: one pool set per connector (the inbound one dials from 127.0.0.6), one forwarder per listener.
        var http = _config.Http;
        var poolOptions = new UpstreamPoolOptions
        {
            MaxConnectionsPerEndpoint = http.PoolMaxConnections,
            MaxIdlePerEndpoint = http.PoolMaxIdle,
            IdleTimeout = http.PoolIdleTimeout,

            // A rent at --pool-max-connections or a service's maxConnections waits up to the connect timeout (the
            // pool could not read it through the counting and TLS connectors).
            WaitTimeout = _config.Tcp.ConnectTimeout,
        };
        // Circuit breakers: new pooled connections to a service's endpoints count against its maxConnections (the
        // registry in force, made below and replaced by reloads, says which service an endpoint belongs to now).
        IUpstreamConnector Counted(IUpstreamConnector inner) => new CircuitBreakingConnector(inner, a => Services?.BreakerFor(a));
        _pool = new UpstreamPool(Counted(_connector), poolOptions, Metrics, _loggerFactory);
        _inboundPool = new UpstreamPool(_inboundConnector, poolOptions, Metrics, _loggerFactory);

        // HTTP/2 upstreams (services with upstreamProtocol http2, or "same" for HTTP/2 clients): streams multiplexed
        // over h2c connections, one pool per connector like the HTTP/1.1 pools.
        // Keepalive PINGs: the service's http2Keepalive over the sidecar-wide defaults; in the shared pools the service is
        // the one the endpoint belongs to now (asked once per new connection).
        Http2EndpointKeepalive KeepaliveOf(string service, Http2KeepaliveConfig? k)
            => new(service, k?.Interval ?? http.Http2KeepaliveInterval, k?.Timeout ?? http.Http2KeepaliveTimeout);
        var http2PoolOptions = new Http2UpstreamPoolOptions
        {
            MaxConnectionsPerEndpoint = http.Http2PoolMaxConnections,
            IdleTimeout = http.PoolIdleTimeout,
            HandshakeTimeout = _config.Tcp.ConnectTimeout,
            Client = Proxy.Http.Http2.Client.Http2ClientOptions.Default with { KeepaliveInterval = http.Http2KeepaliveInterval, KeepaliveTimeout = http.Http2KeepaliveTimeout },
            KeepaliveFor = a => Services?.FindByEndpoint(a) is { } s ? KeepaliveOf(s.Name, s.Config?.Http2Keepalive) : null,
        };
        _http2Pool = new Http2UpstreamPool(Counted(_connector), http2PoolOptions, Metrics, _loggerFactory);
        _inboundHttp2Pool = new Http2UpstreamPool(_inboundConnector, http2PoolOptions, Metrics, _loggerFactory);

        // Mesh identity (issue 5 part 4): the workload certificate (watched), the trust bundle, checked now.
        var mesh = _config.Mesh.Enabled ? LoadMesh(logger) : null;

        // A service's own HTTP/2 pool (TLS, mesh): its keepalive is known without asking the registry.
        Http2UpstreamPoolOptions ServicePoolOptions(ServiceConfig service)
        {
            var keepalive = KeepaliveOf(service.Name, service.Http2Keepalive);
            return http2PoolOptions with { KeepaliveFor = _ => keepalive };
        }

        // TLS origination: services with "tls" get their own connectors (ALPN by upstream protocol) and pools.
        var tlsLogger = _loggerFactory.CreateLogger<TlsUpstreamConnector>();
        ServiceUpstreams? UpstreamsFor(ServiceConfig service)
        {
            if (service.Mesh is { } serviceMesh && mesh is not null)
            {
                // Mesh mTLS to the endpoints' sidecars: the workload certificate, the mesh's trust and the expected
                // identity; ALPN says what is inside (HTTP/1.1, HTTP/2 or opaque TCP), one connector and pool per protocol.
                if (!IdentityPattern.TryParse(serviceMesh.Identity, out var expected, out var patternError))
                {
                    throw new CertificateLoadException($"service {service.Name}: mesh.identity: {patternError}");
                }

                var meshOptions = new TlsClientOptions
                {
                    ClientCertificate = mesh.Certificate,
                    PeerTrust = mesh.Trust,
                    ExpectedPeer = serviceMesh.Identity == "*" ? null : expected,
                    HandshakeTimeout = _config.Tls.HandshakeTimeout,
                };
                TlsUpstreamConnector MeshConnector(MeshInnerProtocol inner)
                    => new(_connector, meshOptions with { ApplicationProtocols = [MeshAlpn.For(inner)] }, service.Name, Metrics, tlsLogger);
                var meshHttp1 = new UpstreamPool(Counted(MeshConnector(MeshInnerProtocol.Http1)), poolOptions, Metrics, _loggerFactory);
                var meshHttp2 = new Http2UpstreamPool(Counted(MeshConnector(MeshInnerProtocol.Http2)), ServicePoolOptions(service), Metrics, _loggerFactory);
                _servicePools.Add(meshHttp1);
                _servicePools.Add(meshHttp2);
                return new ServiceUpstreams(MeshConnector(MeshInnerProtocol.Tcp), meshHttp1, meshHttp2) { UpgradeHttp1 = _config.Mesh.Http2 };
            }

            if (service.Tls is not { } tls)
            {
                return null;
            }

            ICertificateSource? clientCertificate;
            System.Security.Cryptography.X509Certificates.X509Certificate2Collection? roots;
            try
            {
                clientCertificate = tls.CertificatePath is null ? null : WatchCertificate("service/" + service.Name, tls.CertificatePath, tls.KeyPath!);
                roots = tls.CaPath is null ? null : TrustBundle.Load(tls.CaPath);
            }
            catch (CertificateLoadException e)
            {
                throw new CertificateLoadException($"service {service.Name}: tls: {e.Message}", e);
            }

            if (tls.InsecureSkipVerify)
            {
                LogInsecureSkipVerify(logger, service.Name);
            }

            var options = new TlsClientOptions
            {
                ServerName = tls.Sni,
                TrustedAuthorities = roots,
                ClientCertificate = clientCertificate,
                InsecureSkipVerify = tls.InsecureSkipVerify,
                HandshakeTimeout = _config.Tls.HandshakeTimeout,
            };
            TlsUpstreamConnector Connector(params string[] alpn)
                => new(_connector, options with { ApplicationProtocols = ToAlpn(tls.Alpn ?? alpn) }, service.Name, Metrics, tlsLogger);
            var http1 = new UpstreamPool(Counted(Connector("http/1.1")), poolOptions, Metrics, _loggerFactory);
            var http2 = new Http2UpstreamPool(Counted(Connector("h2")), ServicePoolOptions(service), Metrics, _loggerFactory);
            _servicePools.Add(http1);
            _servicePools.Add(http2);
            return new ServiceUpstreams(Connector(), http1, http2);
        }

        var services = new ServiceRegistry(_config.Services, upstreams: UpstreamsFor);
        foreach (var breaker in services.Breakers)
        {
            Metrics.Track(breaker);
        }

        StartHealth(services);
        await StartDiscoveryAsync(services, logger, cancellationToken);
        _accessLog = http.AccessLog is { } accessLogTarget
            ? JsonAccessLog.Open(accessLogTarget, Metrics, logger: _loggerFactory.CreateLogger<JsonAccessLog>())
            : null;
        var forwarderOptions = new Http1ForwarderOptions
        {
            Parser = Http1ParserOptions.Default with
            {
                MaxStartLineBytes = http.MaxRequestLineBytes,
                MaxHeaderBytes = http.MaxHeaderBytes,
                MaxHeaderCount = http.MaxHeaderCount,
            },
            ResponseTimeout = OffIsInfinite(http.ResponseTimeout),
            IdleTimeout = OffIsInfinite(http.IdleTimeout),
            RequestTimeout = OffIsInfinite(http.RequestTimeout),
            StreamIdleTimeout = OffIsInfinite(http.StreamIdleTimeout),
            HeaderTimeout = OffIsInfinite(http.HeaderTimeout),
            PathNormalization = http.PathNormalization,
            RequestId = http.RequestId,
            TunnelIdleTimeout = OffIsInfinite(_config.Tcp.IdleTimeout),
            Observer = new HttpTelemetry(Metrics, _accessLog),
            LoggerFactory = _loggerFactory,
            Drain = Lifecycle.DrainToken,
        };
        var http2Options = new Http2ServerOptions
        {
            MaxConcurrentStreams = _config.Http2.MaxConcurrentStreams,
            InitialStreamWindowSize = _config.Http2.InitialStreamWindow,
            InitialConnectionWindowSize = _config.Http2.InitialConnectionWindow,
            MaxHeaderListSize = _config.Http2.MaxHeaderListSize,
        };
        // --- authorization and JWT: one authenticator (with its JWKS source) per jwt object of the config ---
        foreach (var warning in Authorization.Current.Warnings)
        {
            ConfigReloader.LogPolicyWarning(logger, warning);
        }

        var jwtLogger = _loggerFactory.CreateLogger<JwksSource>();
        JwtAuthenticator Authenticator(JwtConfig jwt)
        {
            var jwks = new JwksSource(jwt.Jwks, jwt.JwksRefresh, logger: jwtLogger, handler: JwksHandlerForTests);
            _jwks.Add(jwks);
            return new JwtAuthenticator(jwt, jwks);
        }

        // Route JWT authenticators are made per snapshot (reused while their config is unchanged); a listener's own, once.
        _authenticator = Authenticator;
        void AddBinding(string name, ListenerKind kind, ListenerConfig? explicitListener)
            => _bindings[name] = new ListenerBinding(
                kind == ListenerKind.Inbound || explicitListener is { Authorization: true } ? Authorization : null,
                explicitListener?.Jwt is { } jwt ? Authenticator(jwt) : null);
        if (_config.OutboundListen is not null)
        {
            AddBinding("outbound", ListenerKind.Outbound, null);
        }

        if (_config.InboundListen is not null)
        {
            AddBinding("inbound", ListenerKind.Inbound, null);
        }

        foreach (var listener in _config.Listeners)
        {
            AddBinding(listener.Name, ListenerKind.Explicit, listener);
        }

        // Everything a reload can change: services, their routes and SNI routes, listeners' routes and security.
        _upstreamsFor = UpstreamsFor;
        var state = _state = new ConfigState(BuildSnapshot(_config, previous: null, services));

        HttpStage HttpFor(string name, ListenerKind kind, ListenerConfig? explicitListener)
        {
            var inbound = kind == ListenerKind.Inbound;

            // Requests routed by a fixed address (passthrough, inbound) check what the snapshot of the start says (policies
            // are swapped inside AuthorizationState); routed ones take their security from the snapshot at each request.
            var security = state.Current.Listeners[name].Security;
            var options = security is null ? forwarderOptions : forwarderOptions with { Security = security };
            var forwarder = new Http1Forwarder(name, inbound ? _inboundPool : _pool, options, inbound ? _inboundHttp2Pool : _http2Pool);
            var listenerRouting = explicitListener is not null ? state.FollowListener(name) : null;
            return new HttpStage(forwarder, state, name, listenerRouting, http2Options);
        }

        // Protocol detection (issue 3): one detector per capture listener; explicit listeners skip it.
        var detectOptions = new ProtocolDetectorOptions { Timeout = _config.Detect.Timeout, OpaquePorts = _config.Detect.OpaquePorts };
        var detectLogger = _loggerFactory.CreateLogger<ProtocolDetector>();

        // TLS passthrough by SNI (issue 5): routers of the services (captured traffic) and explicit listeners that have
        // "sni" routes; the ClientHello peek shares the detection timeout.
        var tlsStage = new TlsPassthroughStage(new ClientHelloPeeker(), _config.Detect.Timeout, logger);

        MeshInboundStage? MeshStageFor(string name)
            => mesh is null ? null : new MeshInboundStage(
                _config.Mesh,
                new TlsTerminator(name, new TlsServerOptions
                {
                    Certificate = mesh.Certificate,
                    ApplicationProtocols = MeshAlpn.All,
                    PeerTrust = mesh.Trust,
                    HandshakeTimeout = _config.Tls.HandshakeTimeout,
                }, Metrics, _loggerFactory.CreateLogger<TlsTerminator>()),
                new ClientHelloPeeker(),
                _config.Detect.Timeout,
                Metrics,
                logger);

        void AddListener(string name, IPEndPoint address, ListenerKind kind, ListenerConfig? explicitListener)
        {
            var detector = kind == ListenerKind.Explicit ? null : new ProtocolDetector(name, detectOptions, Metrics, detectLogger);
            var httpStage = explicitListener is { Protocol: ListenerProtocol.Tcp } ? null : HttpFor(name, kind, explicitListener);
            var meshStage = kind == ListenerKind.Inbound || explicitListener?.Mesh is not null ? MeshStageFor(name) : null;

            // A TCP listener with mesh still serves the HTTP a peer sidecar sends inside mesh mTLS (to its service).
            var meshHttp = meshStage is not null && httpStage is null ? HttpFor(name, kind, explicitListener! with { Protocol = ListenerProtocol.Http }) : null;
            var terminator = explicitListener?.Tls is { } tls ? TerminatorFor(name, tls) : null;
            var handler = new ListenerHandler(name, kind, state, _resolver, kind == ListenerKind.Inbound ? inboundTcp : tcp, tcpContext with { ListenerName = name },
                _config.Tcp.MaxConnections, Metrics, logger, detector, httpStage, tlsStage, terminator,
                kind == ListenerKind.Inbound || explicitListener is { Authorization: true } ? Authorization : null, ConnectionHookForTests,
                meshStage, explicitListener?.Mesh, meshHttp, Lifecycle.CutToken);
            _proxyListeners.Add((name, address, Lifecycle.Track(handler.HandleAsync)));
            if (!handler.NeedsSocket)
            {
                _socketlessListeners.Add(address);
            }
        }

        if (_config.OutboundListen is { } outbound)
        {
            AddListener("outbound", outbound, ListenerKind.Outbound, null);
        }

        if (_config.InboundListen is { } inbound)
        {
            AddListener("inbound", inbound, ListenerKind.Inbound, null);
        }

        foreach (var listener in _config.Listeners)
        {
            AddListener(listener.Name, listener.Address, ListenerKind.Explicit, listener);
        }

        if (_config.AdminListen is { } admin)
        {
            _adminOptions.Listen(admin, options =>
            {
                options.Protocols = HttpProtocols.Http1;
                _adminListen = options;
            });
        }

        foreach (var jwks in _jwks)
        {
            await jwks.StartAsync(cancellationToken);
        }

        if (_source is not null)
        {
            _reloader = new ConfigReloader(_source, _config, ApplyReload, Metrics.Meter, _loggerFactory.CreateLogger<ConfigReloader>());
            if (WatchConfigFile)
            {
                _reloader.Start();
            }
        }

        _transport = new SocketTransportFactory(transport, _loggerFactory);
        _transport.AcceptWithoutSocket = _socketlessListeners.Contains;
        var application = new AdminApplication(_config, Lifecycle, Exporter) { Clusters = _clusters };
        application.Reloader = _reloader;
        if (_proxyListeners.Count > 0)
        {
            // Kestrel's connection middleware contract (ConnectionDelegate over our transport's ConnectionContext), run by
            // our dispatcher: with inline scheduling a connection starts on the event loop that accepted it, not after a
            // hop through the thread pool (see ConnectionServer).
            var server = new ConnectionServer(_transport, _loggerFactory.CreateLogger<ConnectionServer>(), inline: transport.InlineScheduling);
            foreach (var (name, address, app) in _proxyListeners)
            {
                server.Add(name, address, app);
            }

            await server.StartAsync(cancellationToken);
            _server = server;
        }

        if (_adminListen is not null)
        {
            _adminServer = new KestrelServer(Options.Create(_adminOptions), _transport, new ScopelessLoggerFactory(_loggerFactory));
            await _adminServer.StartAsync(application, cancellationToken);
        }

        // Drains once a stop is requested: stopping the proxy's server stops accepting, waits for its connections until
        // the drain deadline, then closes the rest.
        var proxyServer = _server;
        _stopped = Lifecycle.RunAsync(_config.DrainTimeout, token => proxyServer is null ? Task.CompletedTask : proxyServer.StopAsync(token), _loggerFactory.CreateLogger("Proxy.Sidecar.Lifecycle"));
        Readiness.MarkReady();
    }

    // --- TLS ---

    /// <summary>The sidecar's mesh identity: its certificate source and the mesh's trust (both reloaded from their files).</summary>
    private sealed record MeshIdentity(FileCertificateSource Certificate, FileMeshTrustSource Trust);

    /// <summary>
    /// Loads the workload certificate (watched: a rotated file applies to new handshakes) and the trust bundle, and checks
    /// that the certificate is a mesh identity the bundle vouches for; every failure names its config key.
    /// </summary>
    private MeshIdentity LoadMesh(ILogger logger)
    {
        var config = _config.Mesh;
        FileCertificateSource certificate;
        try
        {
            certificate = WatchCertificate("mesh", config.CertificatePath!, config.KeyPath!);
        }
        catch (CertificateLoadException e)
        {
            throw new CertificateLoadException($"mesh.certificate: {e.Message}", e);
        }

        FileMeshTrustSource trust;
        try
        {
            trust = new FileMeshTrustSource(config.TrustBundlePath!, "mesh-trust-bundle", TimeSpan.FromSeconds(10), _loggerFactory.CreateLogger<FileMeshTrustSource>(), Metrics);
        }
        catch (CertificateLoadException e)
        {
            throw new CertificateLoadException($"mesh.trustBundle: {e.Message}", e);
        }

        _meshTrust = trust;
        var check = trust.Current.Verify(certificate.Certificate, [.. certificate.Current.IntermediateCertificates], PeerRole.Server);
        if (!check.IsValid)
        {
            throw new CertificateLoadException($"mesh.certificate: {config.CertificatePath} is not a usable mesh identity: {check.Reason}");
        }

        var identity = check.Identity!.Uri;
        var mode = MeshConfig.Name(config.Mode);
        LogMeshIdentity(logger, identity, certificate.NotAfter, mode);
        return new MeshIdentity(certificate, trust);
    }

    [LoggerMessage(EventId = 4402, Level = LogLevel.Information, Message = "Mesh identity {Identity} (certificate valid until {NotAfter:u}); inbound mode {Mode}")]
    private static partial void LogMeshIdentity(ILogger logger, string identity, DateTimeOffset notAfter, string mode);

    /// <summary>
    /// A certificate and key from PEM files, reloaded when the files change (new handshakes present the new one,
    /// established connections keep theirs); its expiry is in /metrics under <paramref name="name"/>. Disposed at shutdown.
    /// </summary>
    private FileCertificateSource WatchCertificate(string name, string certificatePath, string keyPath)
    {
        var source = CertificateSources.Watch(certificatePath, keyPath, new FileCertificateSourceOptions { Name = name }, _loggerFactory.CreateLogger<FileCertificateSource>(), Metrics);
        _certificateSources.Add(source);
        return source;
    }

    /// <summary>The TLS termination stage of an explicit listener; certificate files are read now (errors name the listener).</summary>
    private TlsTerminator TerminatorFor(string name, ListenerTlsConfig tls)
    {
        TlsServerOptions options;
        try
        {
            options = new TlsServerOptions
            {
                Certificate = WatchCertificate("listener/" + name, tls.CertificatePath, tls.KeyPath),
                ApplicationProtocols = ToAlpn(tls.Alpn),
                ClientCertificateMode = tls.ClientCertificate switch
                {
                    TlsClientCertificateMode.Optional => ClientCertificateMode.Optional,
                    TlsClientCertificateMode.Required => ClientCertificateMode.Required,
                    _ => ClientCertificateMode.None,
                },
                ClientCertificateAuthorities = tls.CaPath is null ? null : TrustBundle.Load(tls.CaPath),
                HandshakeTimeout = _config.Tls.HandshakeTimeout,
            };
        }
        catch (CertificateLoadException e)
        {
            throw new CertificateLoadException($"listener {name}: tls: {e.Message}", e);
        }

        return new TlsTerminator(name, options, Metrics, _loggerFactory.CreateLogger<TlsTerminator>());
    }

    private static SslApplicationProtocol[] ToAlpn(IReadOnlyList<string> protocols)
    {
        var result = new SslApplicationProtocol[protocols.Count];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = new SslApplicationProtocol(protocols[i]);
        }

        return result;
    }

    [LoggerMessage(EventId = 4301, Level = LogLevel.Warning, Message = "Service {Service}: TLS to its endpoints accepts any certificate (insecureSkipVerify): the connection is encrypted but the endpoint is not authenticated")]
    private static partial void LogInsecureSkipVerify(ILogger logger, string service);

    private static TimeSpan OffIsInfinite(TimeSpan value) => value <= TimeSpan.Zero ? Timeout.InfiniteTimeSpan : value;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            await _server.StopAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await DisposeDiscoveryAsync();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        if (_adminServer is not null)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _adminServer.StopAsync(cts.Token);
            _adminServer.Dispose();
        }

        Lifecycle.Dispose();
        await StopHealthAsync();

        _reloader?.Dispose();
        foreach (var jwks in _jwks)
        {
            jwks.Dispose();
        }

        if (_pool is not null)
        {
            await _pool.DisposeAsync();
        }

        if (_inboundPool is not null)
        {
            await _inboundPool.DisposeAsync();
        }

        if (_http2Pool is not null)
        {
            await _http2Pool.DisposeAsync();
        }

        if (_inboundHttp2Pool is not null)
        {
            await _inboundHttp2Pool.DisposeAsync();
        }

        foreach (var pool in _servicePools)
        {
            await pool.DisposeAsync();
        }

        foreach (var source in _certificateSources)
        {
            source.Dispose();
        }

        _meshTrust?.Dispose();

        await DisposeRetiredAsync();
        if (_accessLog is not null)
        {
            await _accessLog.DisposeAsync();
        }

        _splice?.Dispose();
        _connector?.Dispose();
        _inboundConnector?.Dispose();
        _transport?.Dispose();

        Exporter.Dispose();
        Metrics.Dispose();
    }
}
