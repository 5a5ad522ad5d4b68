using System.Net;
using System.Text;
using System.Text.Json;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Demo;

/// <summary>
/// The sidecar configuration the demo runs: no capture listeners, admin on 127.0.0.1:0, one explicit HTTP
/// listener <c>demo</c> on 127.0.0.1:0 for the service <c>hello</c> (endpoints v1 and v2, one subset each, HTTP/1.1 upstream), routed by
/// <code>
///   ab-header: x-version: v2   -> hello/v2
///   canary:    everything else -> split hello/v1 90, hello/v2 10   (--split)
/// </code>
/// It is written as a config file and loaded with <see cref="ConfigLoader"/>, so it passes the same validation as a
/// user's <c>sidecar --config</c> file; the banner prints the loaded configuration with <see cref="ConfigJson"/>
/// (as the admin's /config does), which <c>sidecar --config</c> loads back.
/// </summary>
internal static class DemoConfig
{
    public const string ListenerName = "demo";
    public const string ServiceName = "hello";
    public const string HeaderRouteName = "ab-header";
    public const string SplitRouteName = "canary";

    public static ProxyConfig Build(DemoOptions options, IPEndPoint v1, IPEndPoint v2, out string json)
    {
        var loaded = ConfigLoader.Load(new Dictionary<string, string>(), FileJson(options, v1, v2));
        if (!loaded.Ok)
        {
            // DemoOptionsParser admits only values the loader accepts; reaching this is a bug in the demo.
            throw new InvalidOperationException("the demo's configuration is invalid: " + string.Join("; ", loaded.Errors));
        }

        json = ConfigJson.ToJson(loaded.Config!);
        return loaded.Config!;
    }

    /// <summary>The demo's configuration as a config file.</summary>
    internal static string FileJson(DemoOptions options, IPEndPoint v1, IPEndPoint v2)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("outboundListen", "off");
            w.WriteString("inboundListen", "off");
            w.WriteString("adminListen", "127.0.0.1:0");
            w.WriteString("logLevel", "warning");

            w.WriteStartArray("listeners");
            w.WriteStartObject();
            w.WriteString("name", ListenerName);
            w.WriteString("address", "127.0.0.1:0");
            w.WriteString("service", ServiceName);
            w.WriteString("protocol", "http");
            w.WriteStartArray("routes");
            WriteHeaderRoute(w);
            WriteSplitRoute(w, options);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();

            w.WriteStartArray("services");
            w.WriteStartObject();
            w.WriteString("name", ServiceName);
            // The versions are HTTP/1.1-only servers: an HTTP/2 client of the demo (curl --http2-prior-knowledge) is
            // translated to HTTP/1.1 for them rather than answered 502 upstream_protocol (the default is "same").
            w.WriteString("upstreamProtocol", "http1");
            w.WriteStartArray("endpoints");
            w.WriteStringValue(v1.ToString());
            w.WriteStringValue(v2.ToString());
            w.WriteEndArray();
            w.WriteStartObject("subsets");
            w.WriteStartArray("v1");
            w.WriteStringValue(v1.ToString());
            w.WriteEndArray();
            w.WriteStartArray("v2");
            w.WriteStringValue(v2.ToString());
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary><c>x-version: v2</c> goes to hello/v2.</summary>
    private static void WriteHeaderRoute(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("name", HeaderRouteName);
        w.WriteStartObject("match");
        w.WriteStartArray("headers");
        w.WriteStartObject();
        w.WriteString("name", DemoClient.VersionHeader);
        w.WriteString("exact", "v2");
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteStartObject("action");
        w.WriteString("service", ServiceName);
        w.WriteString("subset", "v2");
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>Everything else is split over the subsets by weight (--split).</summary>
    private static void WriteSplitRoute(Utf8JsonWriter w, DemoOptions options)
    {
        w.WriteStartObject();
        w.WriteString("name", SplitRouteName);
        w.WriteStartObject("action");
        w.WriteStartArray("split");
        foreach (var s in options.Split)
        {
            w.WriteStartObject();
            w.WriteString("service", ServiceName);
            w.WriteString("subset", s.Subset);
            w.WriteNumber("weight", s.Weight);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
