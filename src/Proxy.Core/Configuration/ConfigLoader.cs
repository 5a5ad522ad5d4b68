using System.Net;
using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;
using Proxy.Core.Balancing;
using Proxy.Core.Tcp;

namespace Proxy.Core.Configuration;

/// <summary>Mutable working copy of a configuration while flags and the file are applied.</summary>
internal sealed class ConfigDraft
{
    public IPEndPoint? OutboundListen;
    public IPEndPoint? InboundListen;
    public IPEndPoint? AdminListen;
    public int ReadBufferSize;
    public int IoQueues;
    public int IoThreads;
    public bool IoUring;
    public int Backlog;
    public bool NoDelay;
    public bool InlineScheduling;
    public TimeSpan ConnectTimeout;
    public TimeSpan IdleTimeout;
    public int MaxConnections;
    public SpliceMode Splice;
    public TimeSpan DetectTimeout;
    public IReadOnlyList<int> OpaquePorts;
    public string LogLevel;
    public TimeSpan DrainTimeout;
    public int HttpMaxRequestLine;
    public int HttpMaxHeaderBytes;
    public int HttpMaxHeaders;
    public TimeSpan HttpResponseTimeout;
    public TimeSpan HttpIdleTimeout;
    public TimeSpan HttpRequestTimeout;
    public TimeSpan HttpStreamIdleTimeout;
    public TimeSpan HttpHeaderTimeout;
    public int PoolMaxConnections;
    public int PoolMaxIdle;
    public int Http2PoolMaxConnections;
    public TimeSpan PoolIdleTimeout;
    public TimeSpan Http2KeepaliveInterval;
    public TimeSpan Http2KeepaliveTimeout;
    public string? AccessLog;
    public PathNormalization PathNormalization;
    public RequestIdMode RequestId;
    public int Http2MaxConcurrentStreams;
    public int Http2StreamWindow;
    public int Http2ConnectionWindow;
    public int Http2MaxHeaderList;
    public TimeSpan TlsHandshakeTimeout;
    public string? MeshCertificate;
    public string? MeshKey;
    public string? MeshTrustBundle;
    public MeshMode MeshMode;
    public bool MeshHttp2;
    public Dictionary<int, MeshMode> MeshPorts = [];
    public IReadOnlyList<IPEndPoint> DnsServers;
    public TimeSpan DnsTimeout;
    public List<ListenerConfig> Listeners = [];
    public List<ServiceConfig> Services = [];
    public AuthorizationConfig Authorization = new();

    // The file key of each entry above (entries with errors are left out, so list index != file index).
    public List<string> ListenerKeys = [];
    public List<string> ServiceKeys = [];

    // Names of services the file declares, valid or not: a route to an invalid one is not reported twice.
    public HashSet<string> DeclaredServices = new(StringComparer.Ordinal);

    public ConfigDraft(ProxyConfig d)
    {
        OutboundListen = d.OutboundListen;
        InboundListen = d.InboundListen;
        AdminListen = d.AdminListen;
        ReadBufferSize = d.Transport.ReadBufferSize;
        IoQueues = d.Transport.IoQueues;
        IoThreads = d.Transport.IoThreads;
        IoUring = d.Transport.IoUring;
        Backlog = d.Transport.Backlog;
        NoDelay = d.Transport.NoDelay;
        InlineScheduling = d.Transport.InlineScheduling;
        ConnectTimeout = d.Tcp.ConnectTimeout;
        IdleTimeout = d.Tcp.IdleTimeout;
        MaxConnections = d.Tcp.MaxConnections;
        Splice = d.Tcp.Splice;
        DetectTimeout = d.Detect.Timeout;
        OpaquePorts = d.Detect.OpaquePorts;
        LogLevel = d.LogLevel;
        DrainTimeout = d.DrainTimeout;
        HttpMaxRequestLine = d.Http.MaxRequestLineBytes;
        HttpMaxHeaderBytes = d.Http.MaxHeaderBytes;
        HttpMaxHeaders = d.Http.MaxHeaderCount;
        HttpResponseTimeout = d.Http.ResponseTimeout;
        HttpIdleTimeout = d.Http.IdleTimeout;
        HttpRequestTimeout = d.Http.RequestTimeout;
        HttpStreamIdleTimeout = d.Http.StreamIdleTimeout;
        HttpHeaderTimeout = d.Http.HeaderTimeout;
        PathNormalization = d.Http.PathNormalization;
        RequestId = d.Http.RequestId;
        PoolMaxConnections = d.Http.PoolMaxConnections;
        PoolMaxIdle = d.Http.PoolMaxIdle;
        Http2PoolMaxConnections = d.Http.Http2PoolMaxConnections;
        PoolIdleTimeout = d.Http.PoolIdleTimeout;
        (Http2KeepaliveInterval, Http2KeepaliveTimeout) = (d.Http.Http2KeepaliveInterval, d.Http.Http2KeepaliveTimeout);
        AccessLog = d.Http.AccessLog;
        Http2MaxConcurrentStreams = d.Http2.MaxConcurrentStreams;
        Http2StreamWindow = d.Http2.InitialStreamWindow;
        Http2ConnectionWindow = d.Http2.InitialConnectionWindow;
        Http2MaxHeaderList = d.Http2.MaxHeaderListSize;
        TlsHandshakeTimeout = d.Tls.HandshakeTimeout;
        MeshCertificate = d.Mesh.CertificatePath;
        MeshKey = d.Mesh.KeyPath;
        MeshTrustBundle = d.Mesh.TrustBundlePath;
        MeshMode = d.Mesh.Mode;
        MeshHttp2 = d.Mesh.Http2;
        MeshPorts = new Dictionary<int, MeshMode>(d.Mesh.Ports);
        DnsServers = d.Dns.Servers;
        DnsTimeout = d.Dns.Timeout;
    }

    public ProxyConfig Build() => new()
    {
        OutboundListen = OutboundListen,
        InboundListen = InboundListen,
        AdminListen = AdminListen,
        Transport = new TransportConfig
        {
            ReadBufferSize = ReadBufferSize,
            IoQueues = IoQueues,
            IoThreads = IoThreads,
            IoUring = IoUring,
            Backlog = Backlog,
            NoDelay = NoDelay,
            InlineScheduling = InlineScheduling,
        },
        Tcp = new TcpConfig
        {
            ConnectTimeout = ConnectTimeout,
            IdleTimeout = IdleTimeout,
            MaxConnections = MaxConnections,
            Splice = Splice,
        },
        Detect = new DetectConfig
        {
            Timeout = DetectTimeout,
            OpaquePorts = OpaquePorts,
        },
        Http = new HttpConfig
        {
            MaxRequestLineBytes = HttpMaxRequestLine,
            MaxHeaderBytes = HttpMaxHeaderBytes,
            MaxHeaderCount = HttpMaxHeaders,
            ResponseTimeout = HttpResponseTimeout,
            IdleTimeout = HttpIdleTimeout,
            RequestTimeout = HttpRequestTimeout,
            StreamIdleTimeout = HttpStreamIdleTimeout,
            HeaderTimeout = HttpHeaderTimeout,
            PathNormalization = PathNormalization,
            RequestId = RequestId,
            PoolMaxConnections = PoolMaxConnections,
            PoolMaxIdle = PoolMaxIdle,
            Http2PoolMaxConnections = Http2PoolMaxConnections,
            PoolIdleTimeout = PoolIdleTimeout,
            Http2KeepaliveInterval = Http2KeepaliveInterval,
            Http2KeepaliveTimeout = Http2KeepaliveTimeout,
            AccessLog = AccessLog,
        },
        Http2 = new Http2Config
        {
            MaxConcurrentStreams = Http2MaxConcurrentStreams,
            InitialStreamWindow = Http2StreamWindow,
            InitialConnectionWindow = Http2ConnectionWindow,
            MaxHeaderListSize = Http2MaxHeaderList,
        },
        Tls = new TlsConfig { HandshakeTimeout = TlsHandshakeTimeout },
        Mesh = new MeshConfig
        {
            CertificatePath = MeshCertificate,
            KeyPath = MeshKey,
            TrustBundlePath = MeshTrustBundle,
            Mode = MeshMode,
            Http2 = MeshHttp2,
            Ports = new Dictionary<int, MeshMode>(MeshPorts),
        },
        Dns = new DnsConfig { Servers = DnsServers, Timeout = DnsTimeout },
        Listeners = Listeners.ToArray(),
        Services = Services.ToArray(),
        Authorization = Authorization,
        LogLevel = LogLevel,
        DrainTimeout = DrainTimeout,
    };
}

/// <summary>The outcome of loading: a configuration, or every error found (never just the first).</summary>
public sealed record ConfigResult(ProxyConfig? Config, IReadOnlyList<string> Errors)
{
    public bool Ok => Config is not null;
}

/// <summary>
/// Builds the effective configuration from the defaults, an optional JSON file and the flags (in that
/// order of precedence, flags last), and validates the whole. Unknown file keys are errors. Every error
/// names its key: <c>--backlog</c> for a flag, <c>services[1].endpoints[0]</c> for a file key.
/// </summary>
public static class ConfigLoader
{
    private static readonly JsonDocumentOptions JsonOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
    };

    /// <param name="flags">Flags given explicitly on the command line, by name without dashes.</param>
    /// <param name="fileJson">The config file's text, or null when there is none.</param>
    public static ConfigResult Load(IReadOnlyDictionary<string, string> flags, string? fileJson)
    {
        var errors = new List<string>();
        var draft = new ConfigDraft(new ProxyConfig());

        if (fileJson is not null)
        {
            ApplyFile(draft, fileJson, errors);
        }

        foreach (var (flag, value) in flags)
        {
            var setting = FindByFlag(flag);
            if (setting is null)
            {
                errors.Add($"--{flag}: unknown flag");
                continue;
            }

            if (setting.Apply(draft, value) is { } error)
            {
                errors.Add($"--{flag}: {error}");
            }
        }

        Validate(draft, errors);
        return errors.Count == 0 ? new ConfigResult(draft.Build(), errors) : new ConfigResult(null, errors);
    }

    private static Setting? FindByFlag(string flag)
    {
        foreach (var s in Setting.All)
        {
            if (s.Flag == flag)
            {
                return s;
            }
        }

        return null;
    }

    private static Setting? FindByPath(string path)
    {
        foreach (var s in Setting.All)
        {
            if (s.Path == path)
            {
                return s;
            }
        }

        return null;
    }

    private static void ApplyFile(ConfigDraft draft, string json, List<string> errors)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, JsonOptions);
        }
        catch (JsonException e)
        {
            errors.Add($"config file: not valid JSON ({e.Message})");
            return;
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                errors.Add("config file: the top level must be a JSON object");
                return;
            }

            foreach (var property in doc.RootElement.EnumerateObject())
            {
                switch (property.Name)
                {
                    case "transport":
                    case "tcp":
                    case "detect":
                    case "http":
                    case "http2":
                    case "tls":
                    case "mesh":
                    case "dns":
                        if (property.Value.ValueKind != JsonValueKind.Object)
                        {
                            errors.Add($"{property.Name}: must be an object");
                            break;
                        }

                        foreach (var inner in property.Value.EnumerateObject())
                        {
                            if (property.Name == "mesh" && inner.Name == "ports")
                            {
                                ReadMeshPorts(draft, inner.Value, errors);
                                continue;
                            }

                            if (property.Name == "dns" && inner.Name == "servers" && inner.Value.ValueKind == JsonValueKind.Array)
                            {
                                if (DnsConfigReader.JoinServers(inner.Value, "dns.servers", errors) is { } servers
                                    && DnsConfigReader.ParseServers(servers, out draft.DnsServers) is { } serversError)
                                {
                                    errors.Add($"dns.servers: {serversError}");
                                }

                                continue;
                            }

                            ApplyScalar(draft, $"{property.Name}.{inner.Name}", inner.Value, errors);
                        }

                        break;
                    case "listeners":
                        ReadArray(property.Value, "listeners", errors, (e, key) => ReadListener(draft, e, key, errors));
                        break;
                    case "services":
                        ReadArray(property.Value, "services", errors, (e, key) => ReadService(draft, e, key, errors));
                        break;
                    case "authorization":
                        draft.Authorization = AuthorizationConfigReader.Read(property.Value, "authorization", errors) ?? draft.Authorization;
                        break;
                    default:
                        ApplyScalar(draft, property.Name, property.Value, errors);
                        break;
                }
            }
        }
    }

    private static void ApplyScalar(ConfigDraft draft, string path, JsonElement value, List<string> errors)
    {
        var setting = FindByPath(path);
        if (setting is null)
        {
            errors.Add($"{path}: unknown key");
            return;
        }

        string text;
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                text = value.GetString()!;
                break;
            case JsonValueKind.Number:
            case JsonValueKind.True:
            case JsonValueKind.False:
                text = value.GetRawText();
                break;
            default:
                errors.Add($"{path}: must be a string, number or boolean, not {value.ValueKind.ToString().ToLowerInvariant()}");
                return;
        }

        if (setting.Apply(draft, text) is { } error)
        {
            errors.Add($"{path}: {error}");
        }
    }

    private static void ReadListener(ConfigDraft draft, JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "address", "service", "protocol", "routes", "sni", "tls", "authorization", "jwt", "mesh"))
        {
            return;
        }

        var name = ReadString(e, "name", key, errors);
        var addressText = ReadString(e, "address", key, errors);
        var ok = true;
        var errorsBeforeRoutes = errors.Count;
        var routes = ReadRoutes(e, key, errors, ref ok);
        var routesRefused = errors.Count > errorsBeforeRoutes;
        var sni = ReadSni(e, key, errors, ref ok);
        var hasSni = e.TryGetProperty("sni", out _);
        if (hasSni && routes.Count > 0)
        {
            errors.Add($"{key}.sni: SNI routes (TLS passthrough) and HTTP routes cannot be on one listener");
            ok = false;
        }

        // A listener that routes (by HTTP routes or by SNI) needs no default service; one that does not must name it.
        // Routes given but refused (their errors are reported) count as given: no second error about the service.
        string? service = "";
        if (e.TryGetProperty("service", out _) || (routes.Count == 0 && !routesRefused && !hasSni))
        {
            service = ReadString(e, "service", key, errors);
        }

        var protocol = routes.Count > 0 ? ListenerProtocol.Http : ListenerProtocol.Tcp;
        if (e.TryGetProperty("protocol", out _))
        {
            switch (ReadString(e, "protocol", key, errors))
            {
                case null:
                    ok = false;
                    break;
                case "http":
                    protocol = ListenerProtocol.Http;
                    if (hasSni && routes.Count == 0)
                    {
                        errors.Add($"{key}.sni: SNI routes forward TLS unterminated and need protocol tcp, not http");
                        ok = false;
                    }

                    break;
                case "tcp":
                    protocol = ListenerProtocol.Tcp;
                    if (routes.Count > 0)
                    {
                        errors.Add($"{key}.routes: routes need protocol http, not tcp");
                        ok = false;
                    }

                    break;
                case var other:
                    errors.Add($"{key}.protocol: \"{other}\" is not one of http, tcp");
                    ok = false;
                    break;
            }
        }

        // Authorization and JWT (issue 5): opt-in policies, end-user tokens (HTTP only).
        var authorization = false;
        if (e.TryGetProperty("authorization", out var authz))
        {
            if (authz.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                authorization = authz.GetBoolean();
            }
            else
            {
                errors.Add($"{key}.authorization: must be true or false");
                ok = false;
            }
        }

        JwtConfig? jwt = null;
        if (e.TryGetProperty("jwt", out var jwtElement))
        {
            jwt = AuthorizationConfigReader.ReadJwt(jwtElement, $"{key}.jwt", errors);
            ok &= jwt is not null;
            if (protocol == ListenerProtocol.Tcp)
            {
                errors.Add($"{key}.jwt: needs protocol http, not tcp");
                ok = false;
            }
        }

        IPEndPoint? address = null;
        if (addressText is not null && ValueParsers.ParseListenAddress(addressText, out address) is { } error)
        {
            errors.Add($"{key}.address: {error}");
        }

        // TLS termination (its own block: the SNI routing keys land beside it).
        ListenerTlsConfig? tls = null;
        if (e.TryGetProperty("tls", out var tlsElement))
        {
            tls = TlsConfigReader.ReadListener(tlsElement, $"{key}.tls", protocol, errors);
            ok &= tls is not null;
        }

        // Mesh mTLS termination for peers that dial this listener directly.
        MeshMode? mesh = null;
        if (e.TryGetProperty("mesh", out _))
        {
            var text = ReadString(e, "mesh", key, errors);
            if (text is null)
            {
                ok = false;
            }
            else if (text == "disable" || MeshConfig.ParseMode(text, out var mode) is not null)
            {
                errors.Add($"{key}.mesh: \"{text}\" is not one of strict, permissive (leave the key out for no mesh TLS)");
                ok = false;
            }
            else if (tls is not null)
            {
                errors.Add($"{key}.mesh: a listener terminates either its own tls or mesh mTLS, not both");
                ok = false;
            }
            else if (hasSni)
            {
                errors.Add($"{key}.mesh: SNI routes forward TLS unterminated; mesh mTLS cannot be terminated on the same listener");
                ok = false;
            }
            else
            {
                mesh = mode;
            }
        }

        if (ok && name is not null && address is not null && service is not null)
        {
            draft.Listeners.Add(new ListenerConfig(name, address, service) { Protocol = protocol, Routes = routes, Sni = sni, Tls = tls, Authorization = authorization, Jwt = jwt, Mesh = mesh });
            draft.ListenerKeys.Add(key);
        }
    }

    private static void ReadService(ConfigDraft draft, JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "name", "addresses", "endpoints", "balancer", "hashOn", "hashKey", "subsets", "routes", "upstreamProtocol", "sni", "tls", "mesh", "retries", "retryBudget",
                "outlierDetection", "healthCheck", "dns", "circuitBreakers", "rateLimit", "http2Keepalive"))
        {
            return;
        }

        var name = ReadString(e, "name", key, errors);
        if (name is not null)
        {
            draft.DeclaredServices.Add(name);
        }

        var addresses = ReadEndPoints(e, "addresses", key, errors, required: false);

        // DNS discovery: "endpoints" become optional (static ones besides what DNS gives).
        ServiceDnsConfig? dns = null;
        var ok = true;
        if (e.TryGetProperty("dns", out var dnsElement))
        {
            dns = DnsConfigReader.ReadService(dnsElement, $"{key}.dns", errors);
            ok &= dns is not null;
        }

        int[] weights = [];
        var endpoints = dns is not null && !e.TryGetProperty("endpoints", out _) ? []
            : ReadServiceEndpoints(e, key, errors, out weights, allowEmpty: e.TryGetProperty("dns", out _));
        var balancer = BalancerKind.RoundRobin;
        if (e.TryGetProperty("balancer", out _))
        {
            var balancerText = ReadString(e, "balancer", key, errors);
            if (balancerText is null)
            {
                ok = false;
            }
            else if (!LoadBalancers.TryParse(balancerText, out balancer))
            {
                errors.Add($"{key}.balancer: \"{balancerText}\" is not a balancer ({string.Join(", ", LoadBalancers.Names)})");
                ok = false;
            }
        }

        var hashOn = HashOn.None;
        if (e.TryGetProperty("hashOn", out _))
        {
            var hashText = ReadString(e, "hashOn", key, errors);
            if (hashText is null)
            {
                ok = false;
            }
            else if (hashText is not ("source_ip" or "header" or "cookie"))
            {
                errors.Add($"{key}.hashOn: \"{hashText}\" is not a hash key (source_ip, header, cookie)");
                ok = false;
            }
            else if (balancer != BalancerKind.RingHash && ok)
            {
                errors.Add($"{key}.hashOn: only used with balancer ring_hash, not {LoadBalancers.Name(balancer)}");
                ok = false;
            }
            else
            {
                hashOn = hashText switch { "header" => HashOn.Header, "cookie" => HashOn.Cookie, _ => HashOn.SourceIp };
            }
        }
        else if (balancer == BalancerKind.RingHash)
        {
            // At L4 the source IP is the only key there is.
            hashOn = HashOn.SourceIp;
        }

        string? hashKey = null;
        if (e.TryGetProperty("hashKey", out _))
        {
            hashKey = ReadString(e, "hashKey", key, errors);
            if (hashKey is null)
            {
                ok = false;
            }
            else if (hashOn is not (HashOn.Header or HashOn.Cookie))
            {
                errors.Add($"{key}.hashKey: only used with hashOn header or cookie");
                ok = false;
            }
            else if (hashKey.Length == 0 || !System.Text.Ascii.IsValid(hashKey) || hashKey.Any(static c => c is ' ' or '\t' or '\r' or '\n' or ':' or ';' or '=' or ','))
            {
                errors.Add($"{key}.hashKey: \"{hashKey}\" is not a header or cookie name");
                ok = false;
            }
        }
        else if (hashOn is HashOn.Header or HashOn.Cookie)
        {
            errors.Add($"{key}.hashKey: missing (hashOn {(hashOn == HashOn.Header ? "header" : "cookie")} hashes the value of the header or cookie named here)");
            ok = false;
        }

        var upstreamProtocol = UpstreamProtocol.Same;
        if (e.TryGetProperty("upstreamProtocol", out _))
        {
            var text = ReadString(e, "upstreamProtocol", key, errors);
            switch (text)
            {
                case null:
                    ok = false;
                    break;
                case "same":
                    break;
                case "http1":
                    upstreamProtocol = UpstreamProtocol.Http1;
                    break;
                case "http2":
                    upstreamProtocol = UpstreamProtocol.Http2;
                    break;
                default:
                    errors.Add($"{key}.upstreamProtocol: \"{text}\" is not an upstream protocol (same, http1, http2)");
                    ok = false;
                    break;
            }
        }

        // A DNS service's subsets name addresses DNS may give later: not checked against the static endpoints.
        var subsets = ReadSubsets(e, key, dns is null ? endpoints : null, errors, ref ok);

        var routes = ReadRoutes(e, key, errors, ref ok);
        var sni = ReadSni(e, key, errors, ref ok);

        // TLS origination.
        UpstreamTlsConfig? tls = null;
        if (e.TryGetProperty("tls", out var tlsElement))
        {
            tls = TlsConfigReader.ReadUpstream(tlsElement, $"{key}.tls", errors);
            ok &= tls is not null;
        }

        // Mesh mTLS to the endpoints' sidecars.
        ServiceMeshConfig? mesh = null;
        if (e.TryGetProperty("mesh", out var meshElement))
        {
            mesh = ReadServiceMesh(meshElement, $"{key}.mesh", errors);
            ok &= mesh is not null || meshElement.ValueKind == JsonValueKind.False;
            if (mesh is not null && tls is not null)
            {
                errors.Add($"{key}.mesh: a service is reached either with its own tls or with mesh mTLS, not both");
                ok = false;
            }
        }

        RetryPolicyConfig? retries = null;
        if (e.TryGetProperty("retries", out var retriesElement))
        {
            retries = RetryConfigReader.ReadPolicy(retriesElement, $"{key}.retries", errors);
            ok &= retries is not null;
        }

        var retryBudget = new RetryBudgetConfig();
        if (e.TryGetProperty("retryBudget", out var budgetElement))
        {
            var budget = RetryConfigReader.ReadBudget(budgetElement, $"{key}.retryBudget", errors);
            ok &= budget is not null;
            retryBudget = budget ?? retryBudget;
        }

        var circuitBreakers = e.TryGetProperty("circuitBreakers", out var cb) ? LimitsConfigReader.ReadCircuitBreakers(cb, $"{key}.circuitBreakers", errors) : null;
        var rateLimit = e.TryGetProperty("rateLimit", out var rl) ? LimitsConfigReader.ReadRateLimit(rl, $"{key}.rateLimit", errors) : null;
        ok &= (circuitBreakers is not null || cb.ValueKind == JsonValueKind.Undefined) && (rateLimit is not null || rl.ValueKind == JsonValueKind.Undefined);
        ok &= HealthConfigReader.ReadService(e, key, errors, out var outlierDetection, out var healthCheck);
        var keepalive = e.TryGetProperty("http2Keepalive", out var ka) ? Http2KeepaliveConfigReader.Read(ka, $"{key}.http2Keepalive", errors) : null;
        ok &= keepalive is not null || ka.ValueKind == JsonValueKind.Undefined;

        if (ok && name is not null && addresses is not null && endpoints is not null)
        {
            draft.Services.Add(new ServiceConfig(name, addresses, endpoints)
            {
                Balancer = balancer,
                HashOn = hashOn,
                HashKey = hashKey,
                Weights = weights,
                Subsets = subsets,
                Routes = routes,
                UpstreamProtocol = upstreamProtocol,
                Sni = sni,
                Tls = tls,
                Mesh = mesh,
                Retries = retries,
                RetryBudget = retryBudget,
                CircuitBreakers = circuitBreakers,
                RateLimit = rateLimit,
                OutlierDetection = outlierDetection,
                HealthCheck = healthCheck,
                Dns = dns,
                Http2Keepalive = keepalive,
            });
            draft.ServiceKeys.Add(key);
        }
    }

    /// <summary>A service's "mesh": true, false (not meshed: null without error), or { "identity": "spiffe://..." }.</summary>
    private static ServiceMeshConfig? ReadServiceMesh(JsonElement e, string key, List<string> errors)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.True:
                return new ServiceMeshConfig();
            case JsonValueKind.False:
                return null;
            case JsonValueKind.Object:
                if (!CheckKeys(e, key, errors, "identity"))
                {
                    return null;
                }

                if (!e.TryGetProperty("identity", out _))
                {
                    return new ServiceMeshConfig();
                }

                var identity = ReadString(e, "identity", key, errors);
                if (identity is null)
                {
                    return null;
                }

                if (CheckIdentityPattern(identity) is { } error)
                {
                    errors.Add($"{key}.identity: {error}");
                    return null;
                }

                return new ServiceMeshConfig { Identity = identity };
            default:
                errors.Add($"{key}: must be true, false or {{ \"identity\": \"spiffe://...\" }}");
                return null;
        }
    }

    /// <summary>
    /// The shape of an identity pattern: "*", a SPIFFE ID, or one ending in "/*" (trust domain, namespace, path prefix).
    /// The sidecar parses it fully at start (Proxy.Tls IdentityPattern) and names this key if it is still wrong.
    /// </summary>
    internal static string? CheckIdentityPattern(string text)
    {
        if (text == "*")
        {
            return null;
        }

        if (!text.StartsWith("spiffe://", StringComparison.Ordinal))
        {
            return $"\"{text}\" is not a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<account>), a pattern ending in /* or *";
        }

        var star = text.IndexOf('*', StringComparison.Ordinal);
        return star >= 0 && (star != text.Length - 1 || text[^2] != '/')
            ? $"\"{text}\": '*' may only be the whole pattern or its whole last segment (spiffe://td/ns/prod/*)"
            : null;
    }

    /// <summary>"mesh.ports": { "8080": "strict", "9000": "disable" } — inbound modes by destination port.</summary>
    private static void ReadMeshPorts(ConfigDraft draft, JsonElement e, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add("mesh.ports: must be an object { \"8080\": \"strict\", ... }");
            return;
        }

        foreach (var port in e.EnumerateObject())
        {
            var key = $"mesh.ports.{port.Name}";
            if (!int.TryParse(port.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
            {
                errors.Add($"{key}: \"{port.Name}\" is not a port (1-65535)");
                continue;
            }

            if (port.Value.ValueKind != JsonValueKind.String)
            {
                errors.Add($"{key}: must be a string (strict, permissive, disable)");
                continue;
            }

            if (MeshConfig.ParseMode(port.Value.GetString()!, out var mode) is { } error)
            {
                errors.Add($"{key}: {error}");
                continue;
            }

            draft.MeshPorts[number] = mode;
        }
    }

    /// <summary>The optional "routes" array of a listener or service (see <see cref="RouteConfigReader"/>); empty when absent.</summary>
    private static IReadOnlyList<RouteConfig> ReadRoutes(JsonElement e, string key, List<string> errors, ref bool ok)
    {
        if (!e.TryGetProperty("routes", out var routes))
        {
            return [];
        }

        var read = RouteConfigReader.Read(routes, $"{key}.routes");
        errors.AddRange(read.Errors);
        ok &= read.Ok;
        return read.Routes ?? [];
    }

    /// <summary>The optional "sni" array of a listener or service (see <see cref="SniRouteConfigReader"/>); empty when absent.</summary>
    private static List<SniRouteConfig> ReadSni(JsonElement e, string key, List<string> errors, ref bool ok)
    {
        if (!e.TryGetProperty("sni", out var sni))
        {
            return [];
        }

        return SniRouteConfigReader.Read(sni, $"{key}.sni", errors, ref ok);
    }

    /// <summary>"subsets": { "v1": ["ip:port", ...], "v2": [...] }; every address must be one of the service's endpoints.</summary>
    private static List<SubsetConfig> ReadSubsets(JsonElement e, string key, List<IPEndPoint>? endpoints, List<string> errors, ref bool ok)
    {
        var result = new List<SubsetConfig>();
        if (!e.TryGetProperty("subsets", out var subsets))
        {
            return result;
        }

        if (subsets.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{key}.subsets: must be an object {{ \"v1\": [\"ip:port\", ...], ... }}");
            ok = false;
            return result;
        }

        foreach (var subset in subsets.EnumerateObject())
        {
            var subsetKey = $"{key}.subsets.{subset.Name}";
            if (subset.Name.Length == 0)
            {
                errors.Add($"{key}.subsets: a subset name may not be empty");
                ok = false;
                continue;
            }

            var members = ReadEndPoints(subsets, subset.Name, $"{key}.subsets", errors, required: true);
            if (members is null)
            {
                ok = false;
                continue;
            }

            for (var i = 0; i < members.Count; i++)
            {
                if (endpoints is not null && !endpoints.Contains(members[i]))
                {
                    errors.Add($"{subsetKey}[{i}]: {members[i]} is not one of the service's endpoints");
                    ok = false;
                }
            }

            result.Add(new SubsetConfig(subset.Name, members));
        }

        return result;
    }

    /// <summary>The largest endpoint weight accepted.</summary>
    public const int MaxWeight = 1000;

    /// <summary>
    /// "endpoints": each item "ip:port" (weight 1) or { "address": "ip:port", "weight": 3 }. The weights
    /// come back empty when every weight is 1.
    /// </summary>
    private static List<IPEndPoint>? ReadServiceEndpoints(JsonElement obj, string key, List<string> errors, out int[] weights, bool allowEmpty = false)
    {
        weights = [];
        if (!obj.TryGetProperty("endpoints", out var array))
        {
            errors.Add($"{key}.endpoints: missing");
            return null;
        }

        var list = new List<IPEndPoint>();
        var weightList = new List<int>();
        var ok = true;
        ReadArray(array, $"{key}.endpoints", errors, (item, itemKey) =>
        {
            var weight = 1;
            string? text;
            if (item.ValueKind == JsonValueKind.String)
            {
                text = item.GetString()!;
            }
            else if (item.ValueKind == JsonValueKind.Object)
            {
                if (!CheckKeys(item, itemKey, errors, "address", "weight"))
                {
                    ok = false;
                    return;
                }

                text = ReadString(item, "address", itemKey, errors);
                if (item.TryGetProperty("weight", out var w))
                {
                    if (w.ValueKind != JsonValueKind.Number || !w.TryGetInt32(out weight) || weight < 1 || weight > MaxWeight)
                    {
                        errors.Add($"{itemKey}.weight: must be a whole number from 1 to {MaxWeight}, not {w.GetRawText()}");
                        ok = false;
                    }
                }

                if (text is null)
                {
                    ok = false;
                    return;
                }

                itemKey += ".address";
            }
            else
            {
                errors.Add($"{itemKey}: must be a string \"ip:port\" or an object {{ \"address\": \"ip:port\", \"weight\": n }}");
                ok = false;
                return;
            }

            if (ValueParsers.ParseEndPoint(text, allowZeroPort: false, out var ep) is { } error)
            {
                errors.Add($"{itemKey}: {error}");
                ok = false;
                return;
            }

            list.Add(ep!);
            weightList.Add(weight);
        });
        if (array.ValueKind != JsonValueKind.Array)
        {
            return null;
        }

        if (ok && list.Count == 0 && !allowEmpty)
        {
            errors.Add($"{key}.endpoints: must list at least one endpoint (or give the service \"dns\")");
            return null;
        }

        if (!ok)
        {
            return null;
        }

        if (weightList.Exists(static w => w != 1))
        {
            weights = [.. weightList];
        }

        return list;
    }

    private static List<IPEndPoint>? ReadEndPoints(JsonElement obj, string name, string key, List<string> errors, bool required)
    {
        if (!obj.TryGetProperty(name, out var array))
        {
            if (required)
            {
                errors.Add($"{key}.{name}: missing");
                return null;
            }

            return [];
        }

        var list = new List<IPEndPoint>();
        var ok = true;
        ReadArray(array, $"{key}.{name}", errors, (item, itemKey) =>
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                errors.Add($"{itemKey}: must be a string \"ip:port\"");
                ok = false;
            }
            else if (ValueParsers.ParseEndPoint(item.GetString()!, allowZeroPort: false, out var ep) is { } error)
            {
                errors.Add($"{itemKey}: {error}");
                ok = false;
            }
            else
            {
                list.Add(ep!);
            }
        });
        if (array.ValueKind != JsonValueKind.Array)
        {
            return null;
        }

        if (required && ok && list.Count == 0)
        {
            errors.Add($"{key}.{name}: must list at least one endpoint");
            return null;
        }

        return ok ? list : null;
    }

    private static void Validate(ConfigDraft d, List<string> errors)
    {
        ValidateMesh(d, errors);

        var services = new Dictionary<string, int>(StringComparer.Ordinal);
        var virtualAddresses = new Dictionary<IPEndPoint, string>();
        for (var i = 0; i < d.Services.Count; i++)
        {
            var s = d.Services[i];
            if (!services.TryAdd(s.Name, i))
            {
                errors.Add($"{d.ServiceKeys[i]}.name: \"{s.Name}\" is already the name of {d.ServiceKeys[services[s.Name]]}");
            }

            for (var j = 0; j < s.Addresses.Count; j++)
            {
                if (!virtualAddresses.TryAdd(s.Addresses[j], s.Name))
                {
                    errors.Add($"{d.ServiceKeys[i]}.addresses[{j}]: {s.Addresses[j]} already belongs to service \"{virtualAddresses[s.Addresses[j]]}\"");
                }
            }
        }

        for (var i = 0; i < d.Services.Count; i++)
        {
            ValidateRoutes(d, d.Services[i].Routes, $"{d.ServiceKeys[i]}.routes", errors);
            ValidateSni(d, d.Services[i].Sni, $"{d.ServiceKeys[i]}.sni", errors);
        }

        var listenerNames = new HashSet<string>(StringComparer.Ordinal) { "outbound", "inbound", "admin" };
        var bound = new List<(IPEndPoint Address, string Key)>();
        AddBound(d.OutboundListen, "outboundListen");
        AddBound(d.InboundListen, "inboundListen");
        AddBound(d.AdminListen, "adminListen");
        for (var i = 0; i < d.Listeners.Count; i++)
        {
            var l = d.Listeners[i];
            var key = d.ListenerKeys[i];
            if (!listenerNames.Add(l.Name))
            {
                errors.Add($"{key}.name: \"{l.Name}\" is already used by another listener");
            }

            if (l.Service.Length != 0 && !services.ContainsKey(l.Service) && !d.DeclaredServices.Contains(l.Service))
            {
                errors.Add($"{key}.service: no service is named \"{l.Service}\"");
            }

            ValidateRoutes(d, l.Routes, $"{key}.routes", errors);
            ValidateSni(d, l.Sni, $"{key}.sni", errors);

            AddBound(l.Address, $"{key}.address");
        }

        void AddBound(IPEndPoint? address, string key)
        {
            if (address is null)
            {
                return;
            }

            foreach (var (other, otherKey) in bound)
            {
                if (address.Port != 0 && address.Port == other.Port && Overlaps(address.Address, other.Address))
                {
                    errors.Add($"{key}: {address} collides with {otherKey} ({other})");
                }
            }

            bound.Add((address, key));
        }
    }

    /// <summary>
    /// The mesh identity comes as a whole (certificate, key, trust bundle) or not at all; what needs it (meshed services,
    /// mesh listeners, an explicit inbound mode) says so when it is missing.
    /// </summary>
    private static void ValidateMesh(ConfigDraft d, List<string> errors)
    {
        var given = new List<string>();
        var missing = new List<string>();
        (d.MeshCertificate is null ? missing : given).Add("mesh.certificate");
        (d.MeshKey is null ? missing : given).Add("mesh.key");
        (d.MeshTrustBundle is null ? missing : given).Add("mesh.trustBundle");
        if (given.Count > 0 && missing.Count > 0)
        {
            errors.Add($"{missing[0]}: missing ({string.Join(", ", given)} given; the mesh identity needs certificate, key and trustBundle)");
            return;
        }

        if (missing.Count == 0)
        {
            return;
        }

        const string Needs = "needs the mesh identity (mesh.certificate, mesh.key, mesh.trustBundle, or --mesh-certificate, --mesh-key, --mesh-trust-bundle)";
        for (var i = 0; i < d.Services.Count; i++)
        {
            if (d.Services[i].Mesh is not null)
            {
                errors.Add($"{d.ServiceKeys[i]}.mesh: {Needs}");
            }
        }

        for (var i = 0; i < d.Listeners.Count; i++)
        {
            if (d.Listeners[i].Mesh is not null)
            {
                errors.Add($"{d.ListenerKeys[i]}.mesh: {Needs}");
            }
        }

        if (d.MeshMode == MeshMode.Strict)
        {
            errors.Add($"mesh.mode: strict {Needs}");
        }

        foreach (var (port, mode) in d.MeshPorts)
        {
            if (mode == MeshMode.Strict)
            {
                errors.Add($"mesh.ports.{port}: strict {Needs}");
            }
        }
    }

    /// <summary>Every route destination names a configured service and, when given, one of its subsets.</summary>
    private static void ValidateRoutes(ConfigDraft d, IReadOnlyList<RouteConfig> routes, string key, List<string> errors)
    {
        for (var r = 0; r < routes.Count; r++)
        {
            var destinations = routes[r].Action.Destinations;
            for (var j = 0; j < destinations.Count; j++)
            {
                var dest = destinations[j];
                var where = destinations.Count == 1 ? $"{key}[{r}].action" : $"{key}[{r}].action.split[{j}]";
                var service = d.Services.Find(s => s.Name == dest.Service);
                if (service is null && d.DeclaredServices.Contains(dest.Service))
                {
                    // Declared with errors, already reported.
                }
                else if (service is null)
                {
                    errors.Add($"{where}.service: no service is named \"{dest.Service}\"");
                }
                else if (dest.Subset is not null && !service.Subsets.Any(s => s.Name == dest.Subset))
                {
                    errors.Add($"{where}.subset: service \"{dest.Service}\" has no subset \"{dest.Subset}\"");
                }
            }
        }
    }

    /// <summary>Every SNI route names a configured service.</summary>
    private static void ValidateSni(ConfigDraft d, IReadOnlyList<SniRouteConfig> routes, string key, List<string> errors)
    {
        for (var r = 0; r < routes.Count; r++)
        {
            var service = routes[r].Service;
            if (!d.Services.Exists(s => s.Name == service) && !d.DeclaredServices.Contains(service))
            {
                errors.Add($"{key}[{r}].service: no service is named \"{service}\"");
            }
        }
    }

    private static bool Overlaps(IPAddress a, IPAddress b)
        => a.Equals(b) || IsAny(a) || IsAny(b);

    private static bool IsAny(IPAddress a) => a.Equals(IPAddress.Any) || a.Equals(IPAddress.IPv6Any);
}
