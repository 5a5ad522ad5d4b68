using System.Net;
using System.Text;
using System.Text.Json;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Demo;

/// <summary>
/// The sidecar configuration the demo runs: no capture listeners, admin on 127.0.0.1:0, one explicit HTTP
/// listener <c>demo</c> on 127.0.0.1:0 for the service <c>hello</c> (endpoints v1 and v2, one subset each), routed by
/// <code>
///   ab-header: x-version: v2   -> hello/v2
///   canary:    everything else -> split hello/v1 90, hello/v2 10   (--split)
/// </code>
/// The routes are written as config-file JSON and read back with <see cref="RouteConfigReader"/>, so the demo's
/// routes pass the same validation as a user's and the JSON it prints is exactly what it runs.
/// </summary>
internal static class DemoConfig
{
    public const string ListenerName = "demo";
    public const string ServiceName = "hello";
    public const string HeaderRouteName = "ab-header";
    public const string SplitRouteName = "canary";

    public static ProxyConfig Build(DemoOptions options, IPEndPoint v1, IPEndPoint v2, out string json)
    {
        var routesJson = RoutesJson(options);
        var routes = RouteConfigReader.ReadJson(routesJson);
        if (!routes.Ok)
        {
            // DemoOptionsParser admits only splits the reader accepts; reaching this is a bug in the demo.
            throw new InvalidOperationException("demo routes are invalid: " + string.Join("; ", routes.Errors));
        }

        var listener = new ListenerConfig(ListenerName, new IPEndPoint(IPAddress.Loopback, 0), ServiceName)
        {
            Protocol = ListenerProtocol.Http,
            Routes = routes.Routes!,
        };
        var service = new ServiceConfig(ServiceName, [], [v1, v2])
        {
            Subsets = [new SubsetConfig("v1", [v1]), new SubsetConfig("v2", [v2])],
        };
        var config = new ProxyConfig
        {
            OutboundListen = null,
            InboundListen = null,
            AdminListen = new IPEndPoint(IPAddress.Loopback, 0),
            Listeners = [listener],
            Services = [service],
            LogLevel = "warning",
        };
        json = ConfigJsonText(config, routesJson);
        return config;
    }

    /// <summary>The two routes as the config file spells them.</summary>
    internal static string RoutesJson(DemoOptions options)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartArray();

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

            w.WriteEndArray();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>
    /// The demo's configuration in the config file's shape: what <see cref="ConfigJson"/> writes (it does not know
    /// listener protocols, routes or subsets yet), with the listener's <c>protocol</c> and <c>routes</c> and the
    /// service's <c>subsets</c> added.
    /// </summary>
    internal static string ConfigJsonText(ProxyConfig config, string routesJson)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("outboundListen", ValueParsers.FormatEndPoint(config.OutboundListen));
            w.WriteString("inboundListen", ValueParsers.FormatEndPoint(config.InboundListen));
            w.WriteString("adminListen", ValueParsers.FormatEndPoint(config.AdminListen));
            w.WriteStartArray("listeners");
            foreach (var l in config.Listeners)
            {
                w.WriteStartObject();
                w.WriteString("name", l.Name);
                w.WriteString("address", l.Address.ToString());
                w.WriteString("service", l.Service);
                w.WriteString("protocol", l.Protocol == ListenerProtocol.Http ? "http" : "tcp");
                w.WritePropertyName("routes");
                using (var routes = JsonDocument.Parse(routesJson))
                {
                    routes.RootElement.WriteTo(w);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("services");
            foreach (var s in config.Services)
            {
                w.WriteStartObject();
                w.WriteString("name", s.Name);
                WriteEndPoints(w, "endpoints", s.Endpoints);
                w.WriteStartArray("subsets");
                foreach (var subset in s.Subsets)
                {
                    w.WriteStartObject();
                    w.WriteString("name", subset.Name);
                    WriteEndPoints(w, "endpoints", subset.Endpoints);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteEndPoints(Utf8JsonWriter w, string name, IReadOnlyList<IPEndPoint> endPoints)
    {
        w.WriteStartArray(name);
        foreach (var e in endPoints)
        {
            w.WriteStringValue(e.ToString());
        }

        w.WriteEndArray();
    }
}
