using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Proxy.Bench.E2e.Infrastructure;
using Yarp.ReverseProxy.Configuration;

namespace Proxy.Bench.E2e.YarpApp;

/// <summary>Options of <c>bench yarp</c>.</summary>
internal sealed record YarpOptions(IPEndPoint Listen, IPEndPoint Upstream, IPEndPoint? Ready, bool Http2 = false, bool Http2Upstream = false)
{
    public const string Usage = """
        usage: bench yarp --listen IP:PORT --upstream IP:PORT [--ready IP:PORT] [--http2] [--http2-upstream]

        A stock YARP reverse proxy (Yarp.ReverseProxy, in-memory config: one catch-all route to one
        destination), the "yarp" peer of the e2e HTTP scenario. Logging off, workstation GC.
          --listen     where clients connect
          --upstream   the one destination (http://IP:PORT)
          --ready      optional second listener answering 200 "ready" on every path (readiness probe)
          --http2      the --listen listener speaks HTTP/2 only (h2c with prior knowledge: Kestrel does not
                       offer h2c on an Http1AndHttp2 listener without TLS); the upstream stays HTTP/1.1
          --http2-upstream  forward over h2c (HTTP/2.0, exact version policy) instead of HTTP/1.1
        """;

    /// <summary>Parses the arguments after "yarp"; throws <see cref="E2eException"/> naming every problem.</summary>
    public static YarpOptions Parse(IReadOnlyList<string> args)
    {
        IPEndPoint? listen = null, upstream = null, ready = null;
        var http2 = false;
        var http2Upstream = false;
        var errors = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string? value = null;
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                value = arg[(equals + 1)..];
                arg = arg[..equals];
            }
            else if (arg is "--listen" or "--upstream" or "--ready")
            {
                if (i + 1 < args.Count)
                {
                    value = args[++i];
                }
                else
                {
                    errors.Add($"{arg} needs a value");
                    continue;
                }
            }

            switch (arg)
            {
                case "--listen":
                    listen = EndPoint(arg, value!, errors);
                    break;
                case "--upstream":
                    upstream = EndPoint(arg, value!, errors);
                    break;
                case "--ready":
                    ready = EndPoint(arg, value!, errors);
                    break;
                case "--http2" when value is null:
                    http2 = true;
                    break;
                case "--http2-upstream" when value is null:
                    http2Upstream = true;
                    break;
                default:
                    errors.Add($"unknown option '{args[i]}'");
                    break;
            }
        }

        if (listen is null && !errors.Exists(e => e.StartsWith("--listen", StringComparison.Ordinal)))
        {
            errors.Add("--listen is required");
        }

        if (upstream is null && !errors.Exists(e => e.StartsWith("--upstream", StringComparison.Ordinal)))
        {
            errors.Add("--upstream is required");
        }

        if (errors.Count > 0)
        {
            throw new E2eException(string.Join('\n', errors) + "\n\n" + Usage);
        }

        return new YarpOptions(listen!, upstream!, ready, http2, http2Upstream);
    }

    /// <summary>The arguments that <see cref="Parse"/> reads back into these options.</summary>
    public IReadOnlyList<string> ToArguments()
    {
        List<string> arguments = ["--listen", Listen.ToString(), "--upstream", Upstream.ToString()];
        if (Ready is not null)
        {
            arguments.AddRange(["--ready", Ready.ToString()]);
        }

        if (Http2)
        {
            arguments.Add("--http2");
        }

        if (Http2Upstream)
        {
            arguments.Add("--http2-upstream");
        }

        return arguments;
    }

    private static IPEndPoint? EndPoint(string arg, string text, List<string> errors)
    {
        if (IPEndPoint.TryParse(text, out var endPoint) && endPoint.Port != 0)
        {
            return endPoint;
        }

        errors.Add($"{arg}: '{text}' is not IP:PORT");
        return null;
    }
}

/// <summary>
/// <c>bench yarp ...</c>: hosts a stock YARP reverse proxy in this process until SIGINT/SIGTERM.
/// <code>
///  client ──► Kestrel (--listen) ──► YARP forwarder (HttpClient, keep-alive pool) ──► --upstream
///  probe  ──► Kestrel (--ready)  ──► 200 "ready"
/// </code>
/// The route and cluster come from memory (<c>LoadFromMemory</c>); everything else is YARP's defaults, so it
/// stands for "YARP out of the box" in the comparison.
/// </summary>
internal static class YarpHost
{
    public static int Run(string[] args)
    {
        YarpOptions options;
        try
        {
            if (args.Length > 0 && args[0] is "-h" or "--help")
            {
                Console.WriteLine(YarpOptions.Usage);
                return 0;
            }

            options = YarpOptions.Parse(args);
        }
        catch (E2eException ex)
        {
            Console.Error.WriteLine($"yarp: {ex.Message}");
            return 64;
        }

        using var app = Build(options);
        app.Run();
        return 0;
    }

    /// <summary>The configured application (not started): tests start it with <c>StartAsync</c>.</summary>
    public static WebApplication Build(YarpOptions options)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.Listen, listen =>
            {
                // h2c needs an HTTP/2-only listener; otherwise Kestrel's default (the HTTP/1.1 scenario's peer).
                // The readiness listener keeps the default so the HTTP/1.1 probe works.
                if (options.Http2)
                {
                    listen.Protocols = HttpProtocols.Http2;
                }
            });
            if (options.Ready is not null)
            {
                kestrel.Listen(options.Ready);
            }
        });

        RouteConfig[] routes =
        [
            new RouteConfig { RouteId = "all", ClusterId = "backend", Match = new RouteMatch { Path = "{**catch-all}" } },
        ];
        ClusterConfig[] clusters =
        [
            new ClusterConfig
            {
                ClusterId = "backend",
                Destinations = new Dictionary<string, DestinationConfig>(StringComparer.Ordinal)
                {
                    ["target"] = new DestinationConfig { Address = $"http://{options.Upstream}/" },
                },
                // h2c to the upstream needs HTTP/2.0 with an exact version policy (no ALPN without TLS).
                HttpRequest = options.Http2Upstream
                    ? new Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig { Version = System.Net.HttpVersion.Version20, VersionPolicy = System.Net.Http.HttpVersionPolicy.RequestVersionExact }
                    : null,
            },
        ];
        builder.Services.AddReverseProxy().LoadFromMemory(routes, clusters);

        var app = builder.Build();
        if (options.Ready is { } ready)
        {
            // The probe listener answers before routing; requests on the proxy listener pass straight through.
            var readyPort = ready.Port;
            app.Use((context, next) =>
            {
                if (context.Connection.LocalPort != readyPort)
                {
                    return next(context);
                }

                context.Response.ContentType = "text/plain";
                return context.Response.WriteAsync("ready\n");
            });
        }

        app.MapReverseProxy();
        return app;
    }
}
