using System.Collections.Concurrent;
using System.Net;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Tests.Reliability;

/// <summary>
/// The issue's "done when": clients hammer a service (HTTP/1.1 keep-alive and HTTP/2) whose endpoints fail (one answers
/// every request 503), slow down (one answers after longer than the per-try timeout), go away (that one's process
/// ends mid-run) and come (a reload adds one, another removes the bad ones), with retries, outlier detection and a
/// per-try timeout in force. Every request must end in an answer (no transport failure), and every answer that is not
/// a success must be explained: made by the proxy with its reason header, or the failing upstream's own 503 passed on
/// once the policies (tries, budget) were spent. The counts are printed for the closing note.
/// </summary>
public sealed partial class ReloadTests
{
    [Fact]
    public async Task Chaos_EndpointsFailSlowDownComeAndGo_ReloadsDuringLoad_EveryFailureExplained()
    {
        var good1 = Upstream("good1");
        var good2 = Upstream("good2");
        var flaky = new ScriptedUpstream("flaky", "503");
        _disposables.Add(flaky);
        var slow = new ScriptedUpstream("slow", ScriptedUpstream.Slow(1500));
        _disposables.Add(slow);

        static string Chaos(params IPEndPoint[] endpoints) => ConfigFile(
            $$"""
            { "name": "web", "endpoints": [{{string.Join(", ", endpoints.Select(e => $"\"{e}\""))}}], "upstreamProtocol": "http1",
              "retries": { "maxRetries": 2, "on": ["connect-failure", "reset", "gateway-error"], "backoff": "5ms", "maxBackoff": "20ms" },
              "outlierDetection": { "consecutive5xx": 3, "consecutiveLocalOriginFailure": 2, "interval": "100ms",
                                    "baseEjectionTime": "30s", "maxEjectionPercent": 100 } }
            """,
            """[ { "name": "all", "action": { "service": "web" }, "timeouts": { "perTry": "1s" } } ]""");

        var (host, path) = await StartAsync(Chaos(good1.EndPoint, flaky.EndPoint, slow.EndPoint));
        var url = $"http://{host.AddressOf("edge")}";
        var results = new ConcurrentQueue<(int Status, string? Error, string? Upstream, string? Failure)>();
        using var stop = new CancellationTokenSource();

        async Task LoopAsync(bool http2)
        {
            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = Timeout };
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"{url}/chaos/{i}");
                if (http2)
                {
                    request.Version = HttpVersion.Version20;
                    request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
                }

                try
                {
                    using var response = await http.SendAsync(request);
                    await response.Content.ReadAsStringAsync();
                    results.Enqueue(((int)response.StatusCode, Header(response, "x-proxy-error"), Header(response, "x-upstream"), null));
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    results.Enqueue((0, null, null, e.GetType().Name + ": " + e.Message));
                }
            }
        }

        async Task AfterAsync(int more)
        {
            var target = results.Count + more;
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (results.Count < target)
            {
                await Task.Delay(20, wait.Token);
            }
        }

        var loops = Enumerable.Range(0, 6).Select(i => Task.Run(() => LoopAsync(http2: i >= 4))).ToArray();
        try
        {
            await AfterAsync(300);

            // An endpoint comes.
            Assert.Equal(200, (await ReloadAsync(host, path, Chaos(good1.EndPoint, flaky.EndPoint, slow.EndPoint, good2.EndPoint))).Status);
            await AfterAsync(300);

            // The slow endpoint's process ends (its in-flight requests are cut, new connects refused).
            await slow.DisposeAsync();
            await AfterAsync(300);

            // A reload takes the bad endpoints out.
            Assert.Equal(200, (await ReloadAsync(host, path, Chaos(good1.EndPoint, good2.EndPoint))).Status);
            await AfterAsync(300);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(loops).WaitAsync(Timeout);
        }

        var all = results.ToArray();
        var ok = all.Count(static r => r.Status == 200);
        var proxyMade = all.Where(static r => r.Status is not (0 or 200) && r.Error is not null).ToArray();
        var passedOn = all.Where(static r => r.Status is not (0 or 200) && r.Error is null && r.Upstream == "flaky").ToArray();
        var transport = all.Where(static r => r.Status == 0).ToArray();
        var unexplained = all.Where(static r => r.Status is not (0 or 200) && r.Error is null && r.Upstream != "flaky").ToArray();
        var (_, metrics) = await AdminAsync(host, HttpMethod.Get, "/metrics");
        output.WriteLine($"requests {all.Length}: {ok} ok, {passedOn.Length} upstream 503 passed on after the policies, {proxyMade.Length} proxy-made ({string.Join(", ", proxyMade.GroupBy(static r => $"{r.Status} {r.Error}").Select(static g => $"{g.Key} x{g.Count()}"))}), {transport.Length} transport failures, {unexplained.Length} unexplained");
        foreach (var line in metrics.Split('\n').Where(static l => l.StartsWith("proxy_outlier_ejections_total", StringComparison.Ordinal) || l.StartsWith("proxy_http_retries_total", StringComparison.Ordinal) || l.StartsWith("proxy_http_retry_budget_exhausted_total", StringComparison.Ordinal)))
        {
            output.WriteLine(line);
        }

        Assert.Empty(transport.Select(static r => r.Failure));
        Assert.Empty(unexplained.Select(static r => $"{r.Status} from {r.Upstream}"));
        Assert.True(ok >= 1000, $"only {ok} of {all.Length} requests succeeded");

        // The policies did their part: the failing and the slow endpoint were ejected, failures were retried. (No cap on
        // ejections: with 50% of three endpoints only one may be out, so whether the slow one was ejected depended on
        // when the flaky one's ejection and the reload fell, and a clean-clone CI run saw it not ejected.)
        Assert.Contains("proxy_outlier_ejections_total{service=\"web\",reason=\"consecutive-5xx\"}", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_outlier_ejections_total{service=\"web\",reason=\"consecutive-local-origin-failure\"}", metrics, StringComparison.Ordinal);
        Assert.Contains("proxy_http_retries_total{", metrics, StringComparison.Ordinal);
    }

    private static string? Header(HttpResponseMessage response, string name)
        => response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values) ? values.First() : null;
}
