using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// Our sidecar (a published build, JIT or NativeAOT) with one explicit listener that forwards opaque TCP to one
/// service endpoint; capture listeners off; readiness on the admin listener's /ready.
/// </summary>
internal sealed class SidecarPeer : ProcessPeer
{
    private readonly SidecarBuild _build;
    private readonly IReadOnlyList<string> _extraArguments;

    public SidecarPeer(string name, SidecarBuild build, IReadOnlyList<string> extraArguments, string workDirectory)
        : base(workDirectory)
    {
        Name = name;
        _build = build;
        _extraArguments = extraArguments;
    }

    public override string Name { get; }

    public override string Description =>
        _extraArguments.Count == 0 ? $"sidecar {_build.Flavor}, defaults" : $"sidecar {_build.Flavor}, {string.Join(' ', _extraArguments)}";

    /// <summary>The JSON configuration: one listener "bench" on <paramref name="listen"/> for service "backend".</summary>
    public static string BuildConfig(PeerConfig config, IPEndPoint listen)
    {
        if (config.Protocol != ProxyProtocol.Tcp)
        {
            throw new NotSupportedException($"the sidecar peer has no {config.Protocol} configuration yet");
        }

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartArray("listeners");
            json.WriteStartObject();
            json.WriteString("name", "bench");
            json.WriteString("address", listen.ToString());
            json.WriteString("service", "backend");
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteStartArray("services");
            json.WriteStartObject();
            json.WriteString("name", "backend");

            // A documentation-range virtual address (TEST-NET-2): named in config, never contacted.
            json.WriteStartArray("addresses");
            json.WriteStringValue("198.51.100.7:5201");
            json.WriteEndArray();
            json.WriteStartArray("endpoints");
            json.WriteStringValue(config.Upstream.ToString());
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    protected override ChildProcess StartProcess(PeerConfig config, IPEndPoint listen, IPEndPoint ready)
    {
        var path = Path.Combine(WorkDirectory, $"{Name}.json");
        File.WriteAllText(path, BuildConfig(config, listen));
        string[] arguments =
        [
            "--config", path,
            "--outbound-listen", "off",
            "--inbound-listen", "off",
            "--admin-listen", ready.ToString(),
            .. _extraArguments,
        ];
        return ChildProcess.Start(Name, _build.ExecutablePath, arguments, environment: JitEnvironment());
    }

    /// <summary>The JIT build's apphost must find the runtime: point DOTNET_ROOT at the dotnet on PATH if unset.</summary>
    private Dictionary<string, string>? JitEnvironment()
    {
        if (_build.Flavor != SidecarFlavor.Jit || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_ROOT")))
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
