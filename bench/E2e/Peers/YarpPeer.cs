using System.Net;
using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.YarpApp;

namespace Proxy.Bench.E2e.Peers;

/// <summary>
/// YARP (Yarp.ReverseProxy, stock settings) hosted by this bench binary in a child process:
/// <c>dotnet &lt;Proxy.Bench.dll&gt; yarp --listen ... --upstream ... --ready ...</c> (see <see cref="YarpHost"/>).
/// <c>dotnet app.dll</c> runs the app in the muxer's own process, so the pid we start is the one doing the work.
/// Workstation GC (the bench's runtimeconfig, and <c>DOTNET_gcServer=0</c> to be sure).
/// </summary>
internal sealed class YarpPeer : ProcessPeer
{
    private readonly string _dotnet;
    private readonly string _benchAssembly;
    private readonly string _version;

    public YarpPeer(string dotnet, string benchAssembly, string version, string workDirectory)
        : base(workDirectory)
    {
        _dotnet = dotnet;
        _benchAssembly = benchAssembly;
        _version = version;
    }

    public override string Name => "yarp";

    public override string Description =>
        $"YARP {_version} (bench yarp: Kestrel{(Config?.Protocol == ProxyProtocol.Http2 ? " HTTP/2-only listener (h2c)" : string.Empty)}{(Config?.Http2Upstream == true ? ", h2c upstream (HTTP/2.0, RequestVersionExact)" : string.Empty)} + LoadFromMemory, HttpClient keep-alive), logging off, workstation GC";

    /// <summary>This bench's own assembly (Proxy.Bench.dll), which hosts YARP with its <c>yarp</c> subcommand.</summary>
    public static string BenchAssemblyPath { get; } =
        Path.Combine(AppContext.BaseDirectory, typeof(YarpPeer).Assembly.GetName().Name + ".dll");

    /// <summary>The YARP package version this binary was built with, e.g. "2.3.0".</summary>
    public static string PackageVersion()
    {
        var assembly = typeof(Yarp.ReverseProxy.Configuration.RouteConfig).Assembly;
        var informational = assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion;
        var version = informational ?? assembly.GetName().Version?.ToString() ?? "?";
        var plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus > 0 ? version[..plus] : version;
    }

    /// <summary>The child's command line after the dotnet executable.</summary>
    public static IReadOnlyList<string> BuildArguments(string benchAssembly, PeerConfig config, IPEndPoint listen, IPEndPoint ready)
    {
        var http2 = config.Protocol switch
        {
            ProxyProtocol.Http1 => false,
            ProxyProtocol.Http2 => true,
            _ => throw new NotSupportedException($"the yarp peer is set up for HTTP/1.1 and h2c only, not {config.Protocol}"),
        };

        return [benchAssembly, "yarp", .. new YarpOptions(listen, config.Upstream, ready, http2, config.Http2Upstream).ToArguments()];
    }

    protected override ChildProcess StartProcess(PeerConfig config, IPEndPoint listen, IPEndPoint ready)
    {
        var environment = new Dictionary<string, string>
        {
            ["DOTNET_gcServer"] = "0",
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
        };
        return ChildProcess.Start(Name, _dotnet, BuildArguments(_benchAssembly, config, listen, ready), environment: environment);
    }
}
