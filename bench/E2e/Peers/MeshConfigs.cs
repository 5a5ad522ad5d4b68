using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;

namespace Proxy.Bench.E2e.Peers;

/// <summary>The files a hop needs for mesh mTLS: its certificate chain and key (PEM), and the CA certificate it trusts.</summary>
internal sealed record MeshTlsFiles(string Certificate, string Key, string TrustBundle);

/// <summary>
/// Configuration files of the two-hop mesh scenario's sidecars (the lead's mesh config format). Hop 2 (inbound)
/// has one explicit listener for service "app" (the backend); hop 1 (outbound) one listener for service "hop2",
/// whose endpoint is hop 2's listener. With <see cref="MeshTlsFiles"/> both carry a top-level "mesh" section, hop 2's
/// listener <c>"mesh": "strict"</c> (it only takes mesh mTLS) and hop 1's service <c>"mesh": { "identity": ... }</c>
/// (hop 1 originates mTLS and expects that SPIFFE ID); without, every "mesh" key is left out (plaintext between hops).
/// </summary>
internal static class MeshSidecarConfig
{
    /// <summary>Hop 2: terminates mesh mTLS (or plaintext) on <paramref name="listen"/> and forwards to <paramref name="backend"/>.</summary>
    public static string BuildHop2(IPEndPoint admin, IPEndPoint listen, IPEndPoint backend, MeshTlsFiles? tls) =>
        Build(admin, tls, json =>
        {
            WriteListener(json, "in", listen, "app", tls is null ? null : "strict");
        }, json =>
        {
            WriteService(json, "app", backend, identity: null);
        });

    /// <summary>Hop 1: plaintext HTTP from the client on <paramref name="listen"/>, mesh mTLS (or plaintext) to hop 2 at <paramref name="hop2"/>.</summary>
    public static string BuildHop1(IPEndPoint admin, IPEndPoint listen, IPEndPoint hop2, MeshTlsFiles? tls, string hop2Identity) =>
        Build(admin, tls, json =>
        {
            WriteListener(json, "out", listen, "hop2", mesh: null);
        }, json =>
        {
            WriteService(json, "hop2", hop2, tls is null ? null : hop2Identity);
        });

    private static string Build(IPEndPoint admin, MeshTlsFiles? tls, Action<Utf8JsonWriter> listener, Action<Utf8JsonWriter> service)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("outboundListen", "off");
            json.WriteString("inboundListen", "off");
            json.WriteString("adminListen", admin.ToString());
            if (tls is not null)
            {
                json.WriteStartObject("mesh");
                json.WriteString("certificate", tls.Certificate);
                json.WriteString("key", tls.Key);
                json.WriteString("trustBundle", tls.TrustBundle);
                json.WriteEndObject();
            }

            json.WriteStartArray("listeners");
            listener(json);
            json.WriteEndArray();
            json.WriteStartArray("services");
            service(json);
            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteListener(Utf8JsonWriter json, string name, IPEndPoint address, string service, string? mesh)
    {
        json.WriteStartObject();
        json.WriteString("name", name);
        json.WriteString("address", address.ToString());
        json.WriteString("service", service);
        json.WriteString("protocol", "http");
        if (mesh is not null)
        {
            json.WriteString("mesh", mesh);
        }

        json.WriteEndObject();
    }

    private static void WriteService(Utf8JsonWriter json, string name, IPEndPoint endpoint, string? identity)
    {
        json.WriteStartObject();
        json.WriteString("name", name);
        json.WriteStartArray("endpoints");
        json.WriteStringValue(endpoint.ToString());
        json.WriteEndArray();
        if (identity is not null)
        {
            json.WriteStartObject("mesh");
            json.WriteString("identity", identity);
            json.WriteEndObject();
        }

        json.WriteEndObject();
    }
}

/// <summary>
/// HAProxy's side of the files: one PEM with the certificate chain followed by the private key (what <c>crt</c>
/// takes), and the CA certificate (what <c>ca-file</c> takes).
/// </summary>
internal sealed record HaproxyTlsFiles(string CombinedPem, string CaFile);

/// <summary>
/// haproxy.cfg of the two-hop mesh scenario's HAProxy pair (2.6, <c>mode http</c>, <c>nbthread 1</c>,
/// <c>http-reuse always</c>, the same timeouts as the HTTP/1.1 scenario's peer). Each hop has its own
/// <c>monitor-uri</c> readiness frontend. With <see cref="HaproxyTlsFiles"/>, mutual TLS between the hops: hop 2's
/// bind requires and verifies a client certificate (<c>verify required</c>, offers ALPN h2 and http/1.1), hop 1's
/// server line presents its own and verifies hop 2's (chain only: HAProxy has no SPIFFE ID check) with the ALPN
/// given (h2 by default). Without, plaintext HTTP/1.1 between the hops.
/// </summary>
internal static class MeshHaproxyConfig
{
    /// <summary>Hop 2: terminates TLS (or plaintext) on <paramref name="listen"/> and forwards HTTP/1.1 to <paramref name="backend"/>.</summary>
    public static string BuildHop2(IPEndPoint listen, IPEndPoint ready, IPEndPoint backend, HaproxyTlsFiles? tls)
    {
        var text = Start(ready);
        text.AppendLine("frontend in");
        text.AppendLine(tls is null
            ? string.Create(CultureInfo.InvariantCulture, $"    bind {listen}")
            : string.Create(CultureInfo.InvariantCulture, $"    bind {listen} ssl crt {tls.CombinedPem} ca-file {tls.CaFile} verify required alpn h2,http/1.1"));
        text.AppendLine("    option http-keep-alive");
        text.AppendLine("    default_backend app");
        text.AppendLine("backend app");
        text.AppendLine("    http-reuse always");
        text.AppendLine(CultureInfo.InvariantCulture, $"    server app {backend}");
        return text.ToString();
    }

    /// <summary>Hop 1: plaintext HTTP/1.1 from the client on <paramref name="listen"/>, mutual TLS (or plaintext) to hop 2 at <paramref name="hop2"/>.</summary>
    /// <param name="alpn">What hop 1 offers hop 2 over TLS: "h2" (one multiplexed connection) or "http/1.1".</param>
    public static string BuildHop1(IPEndPoint listen, IPEndPoint ready, IPEndPoint hop2, HaproxyTlsFiles? tls, string alpn = "h2")
    {
        var text = Start(ready);
        text.AppendLine("frontend out");
        text.AppendLine(CultureInfo.InvariantCulture, $"    bind {listen}");
        text.AppendLine("    option http-keep-alive");
        text.AppendLine("    default_backend hop2");
        text.AppendLine("backend hop2");
        text.AppendLine("    http-reuse always");
        text.AppendLine(tls is null
            ? string.Create(CultureInfo.InvariantCulture, $"    server s1 {hop2}")
            : string.Create(CultureInfo.InvariantCulture, $"    server s1 {hop2} ssl crt {tls.CombinedPem} ca-file {tls.CaFile} verify required alpn {alpn}"));
        return text.ToString();
    }

    private static StringBuilder Start(IPEndPoint ready)
    {
        var text = new StringBuilder();
        text.AppendLine("global");
        text.AppendLine("    nbthread 1");
        text.AppendLine("    maxconn 2000");
        text.AppendLine("defaults");
        text.AppendLine("    mode http");
        text.AppendLine("    timeout connect 5s");
        text.AppendLine("    timeout client 60s");
        text.AppendLine("    timeout server 60s");
        text.AppendLine("    timeout http-request 5s");
        text.AppendLine("frontend ready");
        text.AppendLine(CultureInfo.InvariantCulture, $"    bind {ready}");
        text.AppendLine("    monitor-uri /ready");
        return text;
    }
}
