using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;

namespace Proxy.Sidecar.Demo;

/// <summary>What the demo prints at start: where things listen and what the sidecar runs.</summary>
internal sealed record DemoStartInfo(EndPoint Listener, EndPoint Admin, IPEndPoint V1, IPEndPoint V2, string ConfigJson);

/// <summary>
/// Prints the demo: a banner, then every interval a table (or with <c>--json</c> one JSON object per line:
/// <c>{"type":"start"...}</c>, <c>{"type":"interval"...}</c> each interval, <c>{"type":"summary"...}</c> at the end).
/// </summary>
internal sealed class DemoReport(TextWriter output, DemoOptions options)
{
    private static readonly DemoTarget[] Targets = Enum.GetValues<DemoTarget>();

    public async Task WriteStartAsync(DemoStartInfo start)
    {
        if (options.Json)
        {
            await WriteJsonLineAsync(w =>
            {
                w.WriteString("type", "start");
                w.WriteString("listener", start.Listener.ToString());
                w.WriteString("admin", start.Admin.ToString());
                w.WriteString("v1", start.V1.ToString());
                w.WriteString("v2", start.V2.ToString());
                w.WriteNumber("requestsPerSecond", options.RequestsPerSecond);
                w.WriteNumber("concurrency", options.Concurrency);
                w.WriteNumber("headerShare", options.HeaderShare);
                WriteConfiguredSplit(w);
                w.WritePropertyName("config");
                using var config = JsonDocument.Parse(start.ConfigJson);
                config.RootElement.WriteTo(w);
            });
            return;
        }

        await output.WriteAsync(Banner(start));
        await output.FlushAsync();
    }

    internal string Banner(DemoStartInfo start)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("sidecar demo: one HTTP service in two versions, a client, and the sidecar between them (all on loopback)");
        sb.AppendLine();
        sb.Append(inv, $"  v1        http://{start.V1}/   {DemoVersionBehavior.V1.Describe()}").AppendLine();
        sb.Append(inv, $"  v2        http://{start.V2}/   {DemoVersionBehavior.V2.Describe()}").AppendLine();
        sb.Append(inv, $"  sidecar   http://{start.Listener}/   listener '{DemoConfig.ListenerName}' (http) for service '{DemoConfig.ServiceName}'").AppendLine();
        sb.Append(inv, $"  admin     http://{start.Admin}/metrics   (also /config, /ready)").AppendLine();
        sb.AppendLine();
        sb.Append(inv, $"  routes    {DemoConfig.HeaderRouteName}: requests with '{DemoClient.VersionHeader}: v2' -> {DemoConfig.ServiceName}/v2").AppendLine();
        sb.Append(inv, $"            {DemoConfig.SplitRouteName}:    all others split {SplitText()}").AppendLine();
        sb.Append(inv, $"  client    {RateText()}, {options.Concurrency} keep-alive connection(s), {options.HeaderShare:0.#%} of requests with '{DemoClient.VersionHeader}: v2'").AppendLine();
        sb.Append(inv, $"  runs      {(options.Duration is { } d ? "for " + FormatSpan(d) : "until Ctrl+C")}").AppendLine();
        sb.AppendLine();
        sb.AppendLine("Try it from another terminal:");
        sb.Append(inv, $"  curl -i http://{start.Listener}/").AppendLine();
        sb.Append(inv, $"  curl -i -H '{DemoClient.VersionHeader}: v2' http://{start.Listener}/").AppendLine();
        sb.Append(inv, $"  curl http://{start.Admin}/metrics").AppendLine();
        sb.AppendLine();
        sb.AppendLine("Sidecar configuration (config file schema):");
        sb.AppendLine(start.ConfigJson);
        sb.AppendLine();
        return sb.ToString();
    }

    public Task WriteIntervalAsync(DemoSnapshot snapshot) => WriteSnapshotAsync(snapshot, "interval");

    public Task WriteSummaryAsync(DemoSnapshot snapshot) => WriteSnapshotAsync(snapshot, "summary");

    private async Task WriteSnapshotAsync(DemoSnapshot snapshot, string type)
    {
        if (options.Json)
        {
            await WriteJsonLineAsync(w => WriteSnapshotJson(w, snapshot, type));
            return;
        }

        await output.WriteAsync(Table(snapshot, type == "summary"));
        await output.FlushAsync();
    }

    internal string Table(DemoSnapshot s, bool summary)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        var interval = FormatSpan(options.Interval);
        var achieved = summary ? s.RequestsPerSecond : s.IntervalRequestsPerSecond;
        sb.Append(inv, $"{(summary ? "summary after" : "at")} {s.Elapsed.TotalSeconds:0.0}s: {achieved:0} req/s (target {RateText()}, {options.Concurrency} connection(s))").AppendLine();

        // Columns: version, requests (total, last interval), success (total, last interval), latency ms (last interval, total).
        // The summary has only the totals.
        const string Row = "  {0,-8}{1,10}{2,8}{3,9}{4,9}   {5,7}{6,8}{7,8}   {8,7}{9,8}{10,8}";
        const string Group = "  {0,-8}{1,18}{2,18}   {3,23}   {4,23}";
        const string SummaryRow = "  {0,-8}{1,10}{2,9}   {3,7}{4,8}{5,8}";
        const string SummaryGroup = "  {0,-8}{1,10}{2,9}   {3,23}";
        if (summary)
        {
            sb.AppendFormat(inv, SummaryGroup, "", "", "", "latency ms").AppendLine();
            sb.AppendFormat(inv, SummaryRow, "version", "requests", "success", "p50", "p90", "p99").AppendLine();
        }
        else
        {
            sb.AppendFormat(inv, Group, "", "requests", "success", "latency ms, last " + interval, "latency ms, total").AppendLine();
            sb.AppendFormat(inv, Row, "version", "total", "last", "total", "last", "p50", "p90", "p99", "p50", "p90", "p99").AppendLine();
        }

        foreach (var t in s.Targets)
        {
            if (t.Requests == 0 && t.Target is not (DemoTarget.V1 or DemoTarget.V2))
            {
                continue;
            }

            var i = t.IntervalLatency;
            var total = t.TotalLatency;
            if (summary)
            {
                sb.AppendFormat(inv, SummaryRow, t.Name, t.Requests, Percent(t.SuccessRate), Ms(total.P50), Ms(total.P90), Ms(total.P99)).AppendLine();
            }
            else
            {
                sb.AppendFormat(
                    inv, Row, t.Name, t.Requests, t.IntervalRequests, Percent(t.SuccessRate), Percent(t.IntervalSuccessRate),
                    Ms(i.P50), Ms(i.P90), Ms(i.P99), Ms(total.P50), Ms(total.P90), Ms(total.P99)).AppendLine();
            }
        }

        sb.Append(inv, $"  split (requests without the header, n={s.SplitLanded}): observed");
        foreach (var v in options.Split)
        {
            sb.Append(inv, $" {v.Subset} {Percent(s.ObservedSplitShare(v.Subset == "v1" ? DemoTarget.V1 : DemoTarget.V2))}");
        }

        sb.Append(inv, $", configured {SplitText()}").AppendLine();
        var header = s.HeaderTotal;
        var onV2 = s[DemoTarget.V2].HeaderRequests;
        sb.Append(inv, $"  header route ('{DemoClient.VersionHeader}: v2', n={header}): {Percent(header == 0 ? null : (double)onV2 / header)} on v2, configured 100%").AppendLine();
        sb.AppendLine();
        return sb.ToString();
    }

    private void WriteSnapshotJson(Utf8JsonWriter w, DemoSnapshot s, string type)
    {
        w.WriteString("type", type);
        w.WriteNumber("elapsedSeconds", Math.Round(s.Elapsed.TotalSeconds, 3));
        w.WriteNumber("intervalSeconds", Math.Round(s.IntervalLength.TotalSeconds, 3));
        w.WriteNumber("requestsPerSecond", Math.Round(s.RequestsPerSecond, 1));
        w.WriteNumber("intervalRequestsPerSecond", Math.Round(s.IntervalRequestsPerSecond, 1));
        w.WriteStartObject("targets");
        foreach (var t in s.Targets)
        {
            w.WriteStartObject(t.Name);
            w.WriteNumber("requests", t.Requests);
            w.WriteNumber("succeeded", t.Succeeded);
            WriteNumberOrNull(w, "successRate", t.SuccessRate);
            w.WriteNumber("intervalRequests", t.IntervalRequests);
            w.WriteNumber("intervalSucceeded", t.IntervalSucceeded);
            WriteNumberOrNull(w, "intervalSuccessRate", t.IntervalSuccessRate);
            w.WriteNumber("headerRequests", t.HeaderRequests);
            w.WriteNumber("splitRequests", t.SplitRequests);
            w.WriteStartObject("latencyMs");
            WritePercentiles(w, "interval", t.IntervalLatency);
            WritePercentiles(w, "total", t.TotalLatency);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndObject();

        w.WriteStartObject("split");
        w.WriteNumber("requests", s.SplitLanded);
        WriteConfiguredSplit(w, "configured");
        w.WriteStartObject("observed");
        WriteNumberOrNull(w, "v1", s.ObservedSplitShare(DemoTarget.V1));
        WriteNumberOrNull(w, "v2", s.ObservedSplitShare(DemoTarget.V2));
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteStartObject("header");
        w.WriteNumber("requests", s.HeaderTotal);
        foreach (var target in Targets)
        {
            w.WriteNumber(DemoStats.NameOf(target), s[target].HeaderRequests);
        }

        w.WriteEndObject();
    }

    private void WriteConfiguredSplit(Utf8JsonWriter w, string name = "split")
    {
        w.WriteStartObject(name);
        foreach (var version in DemoOptions.Versions)
        {
            w.WriteNumber(version, options.ConfiguredShare(version));
        }

        w.WriteEndObject();
    }

    private static void WritePercentiles(Utf8JsonWriter w, string name, LatencyPercentiles p)
    {
        w.WriteStartObject(name);
        WriteNumberOrNull(w, "p50", p.P50);
        WriteNumberOrNull(w, "p90", p.P90);
        WriteNumberOrNull(w, "p99", p.P99);
        w.WriteEndObject();
    }

    private static void WriteNumberOrNull(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v)
        {
            w.WriteNumber(name, Math.Round(v, 3));
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private async Task WriteJsonLineAsync(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        await output.WriteLineAsync(Encoding.UTF8.GetString(buffer.ToArray()));
        await output.FlushAsync();
    }

    private string SplitText()
    {
        var sb = new StringBuilder();
        foreach (var s in options.Split)
        {
            if (sb.Length > 0)
            {
                sb.Append(", ");
            }

            sb.Append(CultureInfo.InvariantCulture, $"{DemoConfig.ServiceName}/{s.Subset} {options.ConfiguredShare(s.Subset):0.#%}");
        }

        return sb.ToString();
    }

    private string RateText() =>
        options.RequestsPerSecond == 0 ? "unlimited rate" : string.Create(CultureInfo.InvariantCulture, $"{options.RequestsPerSecond} req/s");

    private static string Percent(double? share) => share is { } v ? v.ToString("0.0%", CultureInfo.InvariantCulture) : "-";

    private static string Ms(double? ms) => ms is { } v ? v.ToString(v < 10 ? "0.00" : "0.0", CultureInfo.InvariantCulture) : "-";

    private static string FormatSpan(TimeSpan span) => Proxy.Core.Configuration.ValueParsers.FormatDuration(span);
}
