using System.Text.Json;
using Proxy.Core.Balancing;

namespace Proxy.Core.Configuration;

/// <summary>
/// Writes a configuration as JSON in the config file's own schema, so the admin's /config output can be
/// saved and loaded back with --config. Written by hand over Utf8JsonWriter: no reflection (NativeAOT).
/// </summary>
public static class ConfigJson
{
    public static void Write(ProxyConfig config, Utf8JsonWriter w)
    {
        w.WriteStartObject();
        foreach (var setting in Setting.All)
        {
            var dot = setting.Path.IndexOf('.', StringComparison.Ordinal);
            if (dot < 0)
            {
                w.WriteString(setting.Path, setting.Current(config));
            }
        }

        WriteSection(config, w, "transport");
        WriteSection(config, w, "tcp");
        WriteSection(config, w, "detect");
        WriteSection(config, w, "http");
        WriteSection(config, w, "tls");
        WriteSection(config, w, "dns");
        WriteMesh(config, w);

        w.WriteStartArray("listeners");
        foreach (var l in config.Listeners)
        {
            w.WriteStartObject();
            w.WriteString("name", l.Name);
            w.WriteString("address", l.Address.ToString());
            if (l.Service.Length != 0)
            {
                w.WriteString("service", l.Service);
            }

            w.WriteString("protocol", l.Protocol == ListenerProtocol.Http ? "http" : "tcp");
            if (l.Routes.Count != 0)
            {
                w.WritePropertyName("routes");
                RouteConfigJson.Write(l.Routes, w);
            }

            if (l.Authorization)
            {
                w.WriteBoolean("authorization", true);
            }

            if (l.Jwt is not null)
            {
                w.WritePropertyName("jwt");
                AuthorizationConfigJson.WriteJwt(l.Jwt, w);
            }

            WriteSni(l.Sni, w);
            if (l.Tls is { } tls)
            {
                WriteListenerTls(tls, w);
            }

            if (l.Mesh is { } listenerMesh)
            {
                w.WriteString("mesh", MeshConfig.Name(listenerMesh));
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("services");
        foreach (var s in config.Services)
        {
            w.WriteStartObject();
            w.WriteString("name", s.Name);
            w.WriteStartArray("addresses");
            foreach (var a in s.Addresses)
            {
                w.WriteStringValue(a.ToString());
            }

            w.WriteEndArray();
            w.WriteStartArray("endpoints");
            for (var i = 0; i < s.Endpoints.Count; i++)
            {
                var weight = s.WeightOf(i);
                if (weight == 1)
                {
                    w.WriteStringValue(s.Endpoints[i].ToString());
                }
                else
                {
                    w.WriteStartObject();
                    w.WriteString("address", s.Endpoints[i].ToString());
                    w.WriteNumber("weight", weight);
                    w.WriteEndObject();
                }
            }

            w.WriteEndArray();
            w.WriteString("balancer", LoadBalancers.Name(s.Balancer));
            if (s.HashOn != HashOn.None)
            {
                w.WriteString("hashOn", s.HashOn switch { HashOn.Header => "header", HashOn.Cookie => "cookie", _ => "source_ip" });
            }

            if (s.HashKey is not null)
            {
                w.WriteString("hashKey", s.HashKey);
            }

            if (s.Subsets.Count != 0)
            {
                w.WriteStartObject("subsets");
                foreach (var subset in s.Subsets)
                {
                    w.WriteStartArray(subset.Name);
                    foreach (var ep in subset.Endpoints)
                    {
                        w.WriteStringValue(ep.ToString());
                    }

                    w.WriteEndArray();
                }

                w.WriteEndObject();
            }

            if (s.Routes.Count != 0)
            {
                w.WritePropertyName("routes");
                RouteConfigJson.Write(s.Routes, w);
            }

            if (s.UpstreamProtocol != UpstreamProtocol.Same)
            {
                w.WriteString("upstreamProtocol", s.UpstreamProtocol == UpstreamProtocol.Http2 ? "http2" : "http1");
            }

            WriteSni(s.Sni, w);
            if (s.Tls is { } upstreamTls)
            {
                WriteUpstreamTls(upstreamTls, w);
            }

            if (s.Mesh is { } serviceMesh)
            {
                w.WriteStartObject("mesh");
                w.WriteString("identity", serviceMesh.Identity);
                w.WriteEndObject();
            }

            if (s.Retries is { } retries)
            {
                RetryConfigReader.WritePolicy(w, retries);
            }

            RetryConfigReader.WriteBudget(w, s.RetryBudget);
            if (s.CircuitBreakers is { } breakers)
            {
                LimitsConfigReader.WriteCircuitBreakers(w, breakers);
            }

            if (s.RateLimit is { } rateLimit)
            {
                LimitsConfigReader.WriteRateLimit(w, rateLimit);
            }

            if (s.OutlierDetection is { } outlierDetection)
            {
                HealthConfigReader.WriteOutlierDetection(w, outlierDetection);
            }

            if (s.HealthCheck is { } healthCheck)
            {
                HealthConfigReader.WriteHealthCheck(w, healthCheck);
            }

            if (s.Dns is { } dns)
            {
                DnsConfigReader.WriteService(w, dns);
            }

            if (s.Http2Keepalive is { } keepalive)
            {
                Http2KeepaliveConfigReader.Write(w, keepalive);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WritePropertyName("authorization");
        AuthorizationConfigJson.Write(config.Authorization, w);
        w.WriteEndObject();
    }

    private static void WriteSni(IReadOnlyList<SniRouteConfig> routes, Utf8JsonWriter w)
    {
        if (routes.Count == 0)
        {
            return;
        }

        w.WriteStartArray("sni");
        foreach (var route in routes)
        {
            w.WriteStartObject();
            w.WriteStartArray("serverNames");
            foreach (var name in route.ServerNames)
            {
                w.WriteStringValue(name);
            }

            w.WriteEndArray();
            w.WriteString("service", route.Service);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    // --- TLS ---

    private static void WriteListenerTls(ListenerTlsConfig tls, Utf8JsonWriter w)
    {
        w.WriteStartObject("tls");
        w.WriteString("certificate", tls.CertificatePath);
        w.WriteString("key", tls.KeyPath);
        WriteStrings(w, "alpn", tls.Alpn);
        w.WriteString("clientCertificate", tls.ClientCertificate switch
        {
            TlsClientCertificateMode.Optional => "optional",
            TlsClientCertificateMode.Required => "required",
            _ => "none",
        });
        if (tls.CaPath is not null)
        {
            w.WriteString("ca", tls.CaPath);
        }

        w.WriteEndObject();
    }

    private static void WriteUpstreamTls(UpstreamTlsConfig tls, Utf8JsonWriter w)
    {
        w.WriteStartObject("tls");
        if (tls.Sni is not null)
        {
            w.WriteString("sni", tls.Sni);
        }

        if (tls.Alpn is not null)
        {
            WriteStrings(w, "alpn", tls.Alpn);
        }

        if (tls.CaPath is not null)
        {
            w.WriteString("ca", tls.CaPath);
        }

        if (tls.CertificatePath is not null)
        {
            w.WriteString("certificate", tls.CertificatePath);
            w.WriteString("key", tls.KeyPath);
        }

        if (tls.InsecureSkipVerify)
        {
            w.WriteBoolean("insecureSkipVerify", true);
        }

        w.WriteEndObject();
    }

    private static void WriteStrings(Utf8JsonWriter w, string name, IReadOnlyList<string> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values)
        {
            w.WriteStringValue(v);
        }

        w.WriteEndArray();
    }

    /// <summary>The "mesh" section: its scalar settings (unset paths as ""), then the per-port modes.</summary>
    private static void WriteMesh(ProxyConfig config, Utf8JsonWriter w)
    {
        WriteSection(config, w, "mesh", end: false);
        w.WriteStartObject("ports");
        foreach (var (port, mode) in config.Mesh.Ports.OrderBy(static p => p.Key))
        {
            w.WriteString(port.ToString(System.Globalization.CultureInfo.InvariantCulture), MeshConfig.Name(mode));
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSection(ProxyConfig config, Utf8JsonWriter w, string section, bool end = true)
    {
        w.WriteStartObject(section);
        var prefix = section + ".";
        foreach (var setting in Setting.All)
        {
            if (!setting.Path.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            var name = setting.Path[prefix.Length..];
            var text = setting.Current(config);
            if (text is "true" or "false")
            {
                w.WriteBoolean(name, text == "true");
            }
            else if (long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number))
            {
                w.WriteNumber(name, number);
            }
            else
            {
                w.WriteString(name, text);
            }
        }

        if (end)
        {
            w.WriteEndObject();
        }
    }

    public static string ToJson(ProxyConfig config, bool indented = true)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = indented }))
        {
            Write(config, writer);
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
