using System.Globalization;

namespace Proxy.Bench.E2e.Scenarios;

/// <summary>
/// Evidence that sidecar-mtls really ran mesh mTLS between its hops, read from both hops' admin /metrics after the
/// runs: hop 2's inbound connections by result (mtls, plaintext, refused), the verified peer identities, and hop 1's
/// client handshakes to service hop2. Goes into the report's notes.
/// </summary>
internal static class MeshMetrics
{
    public const string InboundConnections = "proxy_mesh_inbound_connections_total";
    public const string PeerConnections = "proxy_tls_peer_connections_total";
    public const string Handshakes = "proxy_tls_handshakes_total";

    /// <summary>
    /// The sum of the samples of <paramref name="metric"/> (exact name) whose label set contains every one of
    /// <paramref name="labels"/> (each written as in the exposition, e.g. <c>result="mtls"</c>); 0 when none.
    /// </summary>
    public static double Sum(string text, string metric, params string[] labels)
    {
        double sum = 0;
        foreach (var rawLine in text.Split('\n'))
        {
            var line = rawLine.TrimEnd('\r');
            if (!line.StartsWith(metric, StringComparison.Ordinal) || line.Length == metric.Length || (line[metric.Length] != '{' && line[metric.Length] != ' '))
            {
                continue;
            }

            var space = line.LastIndexOf(' ');
            var series = line[..space];
            if (labels.All(label => series.Contains(label, StringComparison.Ordinal))
                && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                sum += value;
            }
        }

        return sum;
    }

    /// <summary>One line for the report from hop 2's and hop 1's /metrics text.</summary>
    public static string Describe(string peer, string hop2Metrics, string hop1Metrics, string hop1Identity)
    {
        var mtls = Sum(hop2Metrics, InboundConnections, "result=\"mtls\"");
        var plaintext = Sum(hop2Metrics, InboundConnections, "result=\"plaintext\"");
        var refused = Sum(hop2Metrics, InboundConnections, "result=\"refused\"");
        var fromHop1 = Sum(hop2Metrics, PeerConnections, $"peer=\"{hop1Identity}\"", "transport=\"mtls\"");
        var handshakesOk = Sum(hop1Metrics, Handshakes, "service=\"hop2\"", "role=\"client\"", "result=\"ok\"");
        var handshakesAll = Sum(hop1Metrics, Handshakes, "service=\"hop2\"", "role=\"client\"");
        return string.Create(
            CultureInfo.InvariantCulture,
            $"{peer}: over the whole run hop 2 accepted {mtls:0} mesh mTLS connection(s) ({fromHop1:0} verified as {hop1Identity}), {plaintext:0} plaintext, {refused:0} refused; hop 1 completed {handshakesOk:0} client handshake(s) to service hop2 and failed {handshakesAll - handshakesOk:0} (admin /metrics: {InboundConnections}, {PeerConnections}, {Handshakes}).");
    }
}
