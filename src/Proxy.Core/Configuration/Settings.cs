using System.Globalization;
using Proxy.Core.Tcp;

namespace Proxy.Core.Configuration;

/// <summary>
/// One scalar setting, reachable both as a flag (<c>--backlog</c>) and as a config file key
/// (<c>transport.backlog</c>). The table below is the single source of the flags, their defaults and
/// help, and of the scalar file keys; flags override the file, the file overrides the defaults.
/// </summary>
public sealed class Setting
{
    internal Setting(string flag, string path, string help, Func<ProxyConfig, string> current, Func<ConfigDraft, string, string?> apply)
    {
        Flag = flag;
        Path = path;
        Help = help;
        Current = current;
        Apply = apply;
    }

    /// <summary>The flag name without dashes, e.g. "connect-timeout".</summary>
    public string Flag { get; }

    /// <summary>The file key path, e.g. "tcp.connectTimeout".</summary>
    public string Path { get; }

    public string Help { get; }

    /// <summary>The value of this setting in a configuration, in the textual form flags take.</summary>
    public Func<ProxyConfig, string> Current { get; }

    /// <summary>Parses the text and sets the value on the draft; returns an error phrase or null.</summary>
    internal Func<ConfigDraft, string, string?> Apply { get; }

    /// <summary>The default, in the textual form flags take.</summary>
    public string Default => Current(Defaults);

    private static readonly ProxyConfig Defaults = new();

    public static IReadOnlyList<Setting> All { get; } =
    [
        new("outbound-listen", "outboundListen",
            "Outbound capture listener (iptables OUTPUT redirects the app's connections here), or off.",
            static c => ValueParsers.FormatEndPoint(c.OutboundListen),
            static (d, t) => ListenOrOff(t, out d.OutboundListen)),
        new("inbound-listen", "inboundListen",
            "Inbound capture listener (iptables PREROUTING redirects connections to the app here), or off.",
            static c => ValueParsers.FormatEndPoint(c.InboundListen),
            static (d, t) => ListenOrOff(t, out d.InboundListen)),
        new("admin-listen", "adminListen",
            "Admin listener (/ready, /metrics, /config, POST /reload, POST /drain, POST /quitquitquit), or off. Keep it on loopback.",
            static c => ValueParsers.FormatEndPoint(c.AdminListen),
            static (d, t) => ListenOrOff(t, out d.AdminListen)),
        new("read-buffer-size", "transport.readBufferSize",
            "Bytes per socket read (the transport's buffer block size), 1024-1048576.",
            static c => Int(c.Transport.ReadBufferSize),
            static (d, t) => ValueParsers.ParseInt(t, 1024, 1 << 20, out d.ReadBufferSize)),
        new("io-queues", "transport.ioQueues",
            "IO queues socket work is scheduled on when not inline; 0 uses the thread pool.",
            static c => Int(c.Transport.IoQueues),
            static (d, t) => ValueParsers.ParseInt(t, 0, 256, out d.IoQueues)),
        new("io-threads", "transport.ioThreads",
            "Event-loop threads (own epoll loops, Linux) that drive every socket; 0 uses .NET's socket engine instead.",
            static c => Int(c.Transport.IoThreads),
            static (d, t) => ValueParsers.ParseInt(t, 0, 64, out d.IoThreads)),
        new("io-uring", "transport.ioUring",
            "With event-loop threads: issue each loop pass's socket reads and writes with one io_uring submission where the kernel offers io_uring (true or false).",
            static c => Bool(c.Transport.IoUring),
            static (d, t) => ValueParsers.ParseBool(t, out d.IoUring)),
        new("backlog", "transport.backlog",
            "Listen backlog of every listener.",
            static c => Int(c.Transport.Backlog),
            static (d, t) => ValueParsers.ParseInt(t, 1, 65535, out d.Backlog)),
        new("no-delay", "transport.noDelay",
            "Set TCP_NODELAY on every socket (true or false).",
            static c => Bool(c.Transport.NoDelay),
            static (d, t) => ValueParsers.ParseBool(t, out d.NoDelay)),
        new("inline-scheduling", "transport.inlineScheduling",
            "Run socket completions, pipe continuations and the start of each new connection inline on the IO thread, without a thread-pool hop (true or false).",
            static c => Bool(c.Transport.InlineScheduling),
            static (d, t) => ValueParsers.ParseBool(t, out d.InlineScheduling)),
        new("connect-timeout", "tcp.connectTimeout",
            "How long a connect to an upstream may take (e.g. 500ms, 5s).",
            static c => ValueParsers.FormatDuration(c.Tcp.ConnectTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: false, out d.ConnectTimeout)),
        new("idle-timeout", "tcp.idleTimeout",
            "Close an opaque TCP connection after this long without a byte either way (e.g. 30m), or off.",
            static c => ValueParsers.FormatDuration(c.Tcp.IdleTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: true, out d.IdleTimeout)),
        new("max-connections", "tcp.maxConnections",
            "Maximum concurrent client connections per listener; 0 is unlimited.",
            static c => Int(c.Tcp.MaxConnections),
            static (d, t) => ValueParsers.ParseInt(t, 0, int.MaxValue, out d.MaxConnections)),
        new("splice", "tcp.splice",
            "Forward opaque TCP with splice(2) on Linux: auto (when supported), on (as auto, but warn when it cannot), off (copy through buffers).",
            static c => FormatSplice(c.Tcp.Splice),
            static (d, t) => ParseSplice(t, out d.Splice)),
        new("detect-timeout", "detect.timeout",
            "How long the capture listeners wait for a client's first bytes to detect its protocol before forwarding it as opaque TCP (e.g. 10s).",
            static c => ValueParsers.FormatDuration(c.Detect.Timeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: false, out d.DetectTimeout)),
        new("opaque-ports", "detect.opaquePorts",
            "Comma-separated original destination ports whose connections skip protocol detection and go straight to opaque TCP (server-speaks-first protocols); empty for none.",
            static c => ValueParsers.FormatPorts(c.Detect.OpaquePorts),
            static (d, t) => ValueParsers.ParsePorts(t, out d.OpaquePorts)),
        new("http-max-request-line", "http.maxRequestLineBytes",
            "Longest HTTP request line accepted, in bytes; a longer one is answered 414.",
            static c => Int(c.Http.MaxRequestLineBytes),
            static (d, t) => ValueParsers.ParseInt(t, 64, 1 << 20, out d.HttpMaxRequestLine)),
        new("http-max-header-bytes", "http.maxHeaderBytes",
            "Most bytes of HTTP header fields accepted per message; more is answered 431.",
            static c => Int(c.Http.MaxHeaderBytes),
            static (d, t) => ValueParsers.ParseInt(t, 256, 1 << 20, out d.HttpMaxHeaderBytes)),
        new("http-max-headers", "http.maxHeaderCount",
            "Most HTTP header fields accepted per message; more is answered 431.",
            static c => Int(c.Http.MaxHeaderCount),
            static (d, t) => ValueParsers.ParseInt(t, 1, 10000, out d.HttpMaxHeaders)),
        new("http-response-timeout", "http.responseTimeout",
            "How long to wait for an upstream's response head after sending the request head before answering 504 (e.g. 15s), or off.",
            static c => ValueParsers.FormatDuration(c.Http.ResponseTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: true, out d.HttpResponseTimeout)),
        new("http-idle-timeout", "http.idleTimeout",
            "Close a client's keep-alive HTTP connection after this long without a request (HTTP/2: without an open stream; GOAWAY first) (e.g. 5m), or off.",
            static c => ValueParsers.FormatDuration(c.Http.IdleTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: true, out d.HttpIdleTimeout)),
        new("http-request-timeout", "http.requestTimeout",
            "How long a whole HTTP request may take, from its head received to its response complete, retries and backoffs included (504 before the response head, a reset after it) (e.g. 30s), or off; routes override it with timeouts.request.",
            static c => ValueParsers.FormatDuration(c.Http.RequestTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: true, out d.HttpRequestTimeout)),
        new("http-stream-idle-timeout", "http.streamIdleTimeout",
            "Abort an HTTP request/response after this long without a byte either way (504 before the response head, a reset after it) (e.g. 5m), or off; routes override it with timeouts.idle.",
            static c => ValueParsers.FormatDuration(c.Http.StreamIdleTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: true, out d.HttpStreamIdleTimeout)),
        new("http-header-timeout", "http.headerTimeout",
            "How long a client may take to send a whole HTTP/1.1 request head once its first byte arrived before it is answered 408 and closed (slowloris) (e.g. 10s), or off.",
            static c => ValueParsers.FormatDuration(c.Http.HeaderTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: true, out d.HttpHeaderTimeout)),
        new("http-path-normalization", "http.pathNormalization",
            "How request paths are normalized before routing, authorization policies and forwarding (as Istio): none; base (RFC 3986: %-encoded unreserved characters decoded, backslashes made slashes, dot segments removed, %00 refused); merge_slashes (base, and // made /); decode_and_merge_slashes (merge_slashes, %2F and %5C decoded first).",
            static c => FormatPathNormalization(c.Http.PathNormalization),
            static (d, t) => ParsePathNormalization(t, out d.PathNormalization)),
        new("http-request-id", "http.requestId",
            "x-request-id: preserve (a request's own is passed on and logged; none is added) or generate (as Envoy: a request without one also gets a new UUID, sent upstream and logged).",
            static c => c.Http.RequestId == RequestIdMode.Generate ? "generate" : "preserve",
            static (d, t) => ParseRequestId(t, out d.RequestId)),
        new("pool-max-connections", "http.poolMaxConnections",
            "Most upstream HTTP connections per endpoint (busy and idle); 0 is unlimited.",
            static c => Int(c.Http.PoolMaxConnections),
            static (d, t) => ValueParsers.ParseInt(t, 0, int.MaxValue, out d.PoolMaxConnections)),
        new("pool-max-idle", "http.poolMaxIdle",
            "Most idle keep-alive upstream connections kept per endpoint.",
            static c => Int(c.Http.PoolMaxIdle),
            static (d, t) => ValueParsers.ParseInt(t, 0, 100000, out d.PoolMaxIdle)),
        new("h2-pool-max-connections", "http.h2PoolMaxConnections",
            "Most HTTP/2 upstream connections per endpoint (each carries many concurrent streams); 0 is unlimited.",
            static c => Int(c.Http.Http2PoolMaxConnections),
            static (d, t) => ValueParsers.ParseInt(t, 0, 100000, out d.Http2PoolMaxConnections)),
        new("pool-idle-timeout", "http.poolIdleTimeout",
            "Close an idle pooled upstream connection after this long (e.g. 60s).",
            static c => ValueParsers.FormatDuration(c.Http.PoolIdleTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: false, out d.PoolIdleTimeout)),
        new("h2-keepalive-interval", "http.h2KeepaliveInterval",
            "HTTP/2 upstream connections (idle ones too) send a PING after this long without a frame from the server (e.g. 30s), or off; services override it with http2Keepalive.interval.",
            static c => ValueParsers.FormatDuration(c.Http.Http2KeepaliveInterval),
            static (d, t) => Http2KeepaliveConfigReader.ParseInterval(t, out d.Http2KeepaliveInterval)),
        new("h2-keepalive-timeout", "http.h2KeepaliveTimeout",
            "An HTTP/2 upstream connection whose keepalive PING gets no answer (nor any frame) for this long is closed and leaves the pool (e.g. 10s); services override it with http2Keepalive.timeout.",
            static c => ValueParsers.FormatDuration(c.Http.Http2KeepaliveTimeout),
            static (d, t) => Http2KeepaliveConfigReader.ParseTimeout(t, out d.Http2KeepaliveTimeout)),
        new("access-log", "http.accessLog",
            "JSON access log of HTTP requests, one object per line: off, stdout, or a file path to append to.",
            static c => c.Http.AccessLog ?? "off",
            static (d, t) => ParseAccessLog(t, out d.AccessLog)),
        new("http2-max-concurrent-streams", "http2.maxConcurrentStreams",
            "Most concurrent streams per HTTP/2 client connection (SETTINGS_MAX_CONCURRENT_STREAMS), 1-10000; more are refused.",
            static c => Int(c.Http2.MaxConcurrentStreams),
            static (d, t) => ValueParsers.ParseInt(t, 1, 10000, out d.Http2MaxConcurrentStreams)),
        new("http2-stream-window", "http2.initialStreamWindow",
            "Request body bytes an HTTP/2 client may have in flight per stream (its flow-control window), 65535-2147483647.",
            static c => Int(c.Http2.InitialStreamWindow),
            static (d, t) => ValueParsers.ParseInt(t, 65535, int.MaxValue, out d.Http2StreamWindow)),
        new("http2-connection-window", "http2.initialConnectionWindow",
            "Request body bytes an HTTP/2 client may have in flight per connection, 65535-2147483647.",
            static c => Int(c.Http2.InitialConnectionWindow),
            static (d, t) => ValueParsers.ParseInt(t, 65535, int.MaxValue, out d.Http2ConnectionWindow)),
        new("http2-max-header-list", "http2.maxHeaderListSize",
            "Largest decoded HTTP/2 header list in bytes (name + value + 32 per field), 1024-16777216; larger is answered 431.",
            static c => Int(c.Http2.MaxHeaderListSize),
            static (d, t) => ValueParsers.ParseInt(t, 1024, 16 * 1024 * 1024, out d.Http2MaxHeaderList)),
        // --- TLS ---
        new("tls-handshake-timeout", "tls.handshakeTimeout",
            "How long a TLS handshake (termination on a listener, or origination to an upstream) may take before it is abandoned (e.g. 10s).",
            static c => ValueParsers.FormatDuration(c.Tls.HandshakeTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: false, out d.TlsHandshakeTimeout)),
        // --- mesh mTLS (MeshConfig) ---
        new("mesh-certificate", "mesh.certificate",
            "The workload certificate chain (PEM, leaf first; its URI SAN is the sidecar's SPIFFE ID), or none. With --mesh-key and --mesh-trust-bundle it turns the mesh on.",
            static c => c.Mesh.CertificatePath ?? "none",
            static (d, t) => PathOrNone(t, out d.MeshCertificate)),
        new("mesh-key", "mesh.key",
            "The workload's private key (PEM).",
            static c => c.Mesh.KeyPath ?? "none",
            static (d, t) => PathOrNone(t, out d.MeshKey)),
        new("mesh-trust-bundle", "mesh.trustBundle",
            "The mesh root CA certificates (PEM) peers' certificates must chain to.",
            static c => c.Mesh.TrustBundlePath ?? "none",
            static (d, t) => PathOrNone(t, out d.MeshTrustBundle)),
        new("mesh-mode", "mesh.mode",
            "Inbound mesh mTLS on ports without their own mode (mesh.ports): strict (plaintext refused), permissive (both accepted), disable.",
            static c => MeshConfig.Name(c.Mesh.Mode),
            static (d, t) => MeshConfig.ParseMode(t, out d.MeshMode)),
        new("mesh-http2", "mesh.http2",
            "Carry HTTP/1.1 requests to meshed services as HTTP/2 between the sidecars (the app still sees HTTP/1.1) (true or false).",
            static c => Bool(c.Mesh.Http2),
            static (d, t) => ValueParsers.ParseBool(t, out d.MeshHttp2)),
        // --- DNS discovery (DnsConfigReader) ---
        new("dns-server", "dns.servers",
            "DNS servers asked for services with \"dns\": system (the resolvers in /etc/resolv.conf), or comma-separated ip or ip:port (port 53 when omitted), tried in order.",
            static c => DnsConfigReader.FormatServers(c.Dns.Servers),
            static (d, t) => DnsConfigReader.ParseServers(t, out d.DnsServers)),
        new("dns-timeout", "dns.timeout",
            "How long one DNS query may take before the next server is tried (e.g. 2s); a lookup that fails keeps the last endpoints.",
            static c => ValueParsers.FormatDuration(c.Dns.Timeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: false, out d.DnsTimeout)),
        new("log-level", "logLevel",
            "Minimum log level: trace, debug, information, warning, error, critical, none.",
            static c => c.LogLevel,
            static (d, t) => ParseLogLevel(t, out d.LogLevel)),
        new("drain-timeout", "drainTimeout",
            "On SIGTERM or admin POST /drain: how long to wait for open connections to finish (HTTP ones are asked to close) before closing the rest and exiting (e.g. 25s).",
            static c => ValueParsers.FormatDuration(c.DrainTimeout),
            static (d, t) => ValueParsers.ParseDuration(t, allowOff: false, out d.DrainTimeout)),
    ];

    private static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Bool(bool value) => value ? "true" : "false";

    private static string? ListenOrOff(string text, out System.Net.IPEndPoint? endPoint)
    {
        if (text == "off")
        {
            endPoint = null;
            return null;
        }

        return ValueParsers.ParseListenAddress(text, out endPoint);
    }

    private static string? ParseSplice(string text, out SpliceMode mode)
    {
        (mode, var error) = text switch
        {
            "auto" => (SpliceMode.Auto, null),
            "on" => (SpliceMode.Always, null),
            "off" => (SpliceMode.Never, (string?)null),
            _ => (SpliceMode.Auto, $"\"{text}\" is not one of auto, on, off"),
        };
        return error;
    }

    private static string? ParseRequestId(string text, out RequestIdMode mode)
    {
        (mode, var error) = text switch
        {
            "generate" => (RequestIdMode.Generate, null),
            "preserve" => (RequestIdMode.Preserve, (string?)null),
            _ => (RequestIdMode.Preserve, $"\"{text}\" is not one of preserve, generate"),
        };
        return error;
    }

    private static string? ParsePathNormalization(string text, out PathNormalization mode)
    {
        (mode, var error) = text switch
        {
            "none" => (PathNormalization.None, null),
            "base" => (PathNormalization.Base, null),
            "merge_slashes" => (PathNormalization.MergeSlashes, null),
            "decode_and_merge_slashes" => (PathNormalization.DecodeAndMergeSlashes, (string?)null),
            _ => (PathNormalization.Base, $"\"{text}\" is not one of none, base, merge_slashes, decode_and_merge_slashes"),
        };
        return error;
    }

    private static string FormatPathNormalization(PathNormalization mode) => mode switch
    {
        PathNormalization.None => "none",
        PathNormalization.MergeSlashes => "merge_slashes",
        PathNormalization.DecodeAndMergeSlashes => "decode_and_merge_slashes",
        _ => "base",
    };

    private static string FormatSplice(SpliceMode mode) => mode switch
    {
        SpliceMode.Always => "on",
        SpliceMode.Never => "off",
        _ => "auto",
    };

    /// <summary>A file path, or <c>none</c> (or empty) for no file; a file really named "none" is given as <c>./none</c>.</summary>
    private static string? PathOrNone(string text, out string? path)
    {
        path = text.Length == 0 || text == "none" ? null : text;
        return null;
    }

    private static string? ParseAccessLog(string text, out string? target)
    {
        target = text == "off" ? null : text;
        return text.Length == 0 ? "must be off, stdout, or a file path" : null;
    }

    private static readonly string[] LogLevels = ["trace", "debug", "information", "warning", "error", "critical", "none"];

    private static string? ParseLogLevel(string text, out string level)
    {
        level = text;
        return Array.IndexOf(LogLevels, text) >= 0 ? null : $"\"{text}\" is not one of {string.Join(", ", LogLevels)}";
    }
}
