using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// Our sidecar (a published build, JIT or NativeAOT) with one explicit listener that forwards to one service
/// endpoint (opaque TCP, or HTTP/1.1 with the listener's "protocol" key); capture listeners off; readiness on the
/// admin listener's /ready, allocation counter on its /metrics.
/// </summary>
internal sealed class SidecarPeer : ProcessPeer
{
    private readonly SidecarBuild _build;
    private readonly IReadOnlyList<string> _extraArguments;
    private readonly string? _listenerProtocol;

    /// <param name="listenerProtocol">The listener's "protocol" value in HTTP scenarios; null leaves the key out.</param>
    public SidecarPeer(string name, SidecarBuild build, IReadOnlyList<string> extraArguments, string workDirectory, string? listenerProtocol = "http")
        : base(workDirectory)
    {
        Name = name;
        _build = build;
        _extraArguments = extraArguments;
        _listenerProtocol = listenerProtocol;
    }

    public override string Name { get; }

    public override string Description =>
        $"sidecar {_build.Flavor}, {(_extraArguments.Count == 0 ? "defaults" : string.Join(' ', _extraArguments))}{ProtocolNote}";

    /// <summary>The admin listener (/ready, /metrics); valid after launch.</summary>
    public IPEndPoint AdminEndPoint => ReadyEndPoint;

    private string ProtocolNote => Config?.Protocol switch
    {
        ProxyProtocol.Http1 when _listenerProtocol is null => ", listener without \"protocol\" (opaque TCP)",
        ProxyProtocol.Http1 => $", listener \"protocol\": \"{_listenerProtocol}\"",
        ProxyProtocol.Http2 when _listenerProtocol is null => ", listener without \"protocol\" (opaque TCP: h2c passes through to the HTTP/1.1 backend and fails)",
        ProxyProtocol.Http2 => $", listener \"protocol\": \"{_listenerProtocol}\" (h2c by preface sniffing, {(Config.Http2Upstream ? "h2c upstream, one multiplexed connection" : "HTTP/1.1 upstream")})",
        _ => string.Empty,
    };

    /// <summary>
    /// The JSON configuration: one listener "bench" on <paramref name="listen"/> for service "backend". Opaque TCP:
    /// the L4 layout (capture listeners off by flag). HTTP/1.1: capture listeners off and the admin listener in the
    /// file, the listener marked <c>"protocol": <paramref name="listenerProtocol"/></c> (null leaves the key out, so
    /// a sidecar without the HTTP forwarder forwards the listener as opaque TCP).
    /// </summary>
    public static string BuildConfig(PeerConfig config, IPEndPoint listen, IPEndPoint? admin = null, string? listenerProtocol = "http")
    {
        var http = config.Protocol switch
        {
            ProxyProtocol.Tcp => false,
            // h2c needs nothing else: an HTTP listener sniffs the HTTP/2 preface and forwards streams as HTTP/1.1.
            ProxyProtocol.Http1 or ProxyProtocol.Http2 => true,
            _ => throw new NotSupportedException($"the sidecar peer has no {config.Protocol} configuration yet"),
        };

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            if (http)
            {
                // "off" rather than null: the config loader takes every scalar setting as text.
                json.WriteString("outboundListen", "off");
                json.WriteString("inboundListen", "off");
                if (admin is not null)
                {
                    json.WriteString("adminListen", admin.ToString());
                }
            }

            json.WriteStartArray("listeners");
            json.WriteStartObject();
            json.WriteString("name", "bench");
            json.WriteString("address", listen.ToString());
            json.WriteString("service", "backend");
            if (http && listenerProtocol is not null)
            {
                json.WriteString("protocol", listenerProtocol);
            }

            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteStartArray("services");
            json.WriteStartObject();
            json.WriteString("name", "backend");
            if (!http)
            {
                // A documentation-range virtual address (TEST-NET-2): named in config, never contacted.
                json.WriteStartArray("addresses");
                json.WriteStringValue("198.51.100.7:5201");
                json.WriteEndArray();
            }

            json.WriteStartArray("endpoints");
            json.WriteStringValue(config.Upstream.ToString());
            json.WriteEndArray();
            if (http)
            {
                // Said explicitly either way: the default ("same") would follow the client's protocol.
                json.WriteString("upstreamProtocol", config.Http2Upstream ? "http2" : "http1");
            }

            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    protected override ChildProcess StartProcess(PeerConfig config, IPEndPoint listen, IPEndPoint ready)
    {
        var path = Path.Combine(WorkDirectory, $"{Name}.json");
        File.WriteAllText(path, BuildConfig(config, listen, ready, _listenerProtocol));
        string[] arguments =
        [
            "--config", path,
            "--outbound-listen", "off",
            "--inbound-listen", "off",
            "--admin-listen", ready.ToString(),
            .. _extraArguments,
        ];
        return ChildProcess.Start(Name, _build.ExecutablePath, arguments, environment: JitEnvironment(_build));
    }

    /// <summary>The JIT build's apphost must find the runtime: point DOTNET_ROOT at the dotnet on PATH if unset.</summary>
    internal static Dictionary<string, string>? JitEnvironment(SidecarBuild build)
    {
        if (build.Flavor != SidecarFlavor.Jit || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_ROOT")))
        {
            return null;
        }

        var dotnet = ToolInstaller.Find("dotnet");
        if (dotnet is null)
        {
            return null;
        }

        var target = File.ResolveLinkTarget(dotnet, returnFinalTarget: true)?.FullName ?? dotnet;
        return new Dictionary<string, string> { ["DOTNET_ROOT"] = Path.GetDirectoryName(target)! };
    }
}
