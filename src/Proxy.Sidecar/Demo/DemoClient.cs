using System.Net.Http.Headers;

namespace Proxy.Sidecar.Demo;

/// <summary>
/// The demo's load generator: <see cref="DemoOptions.Concurrency"/> workers share one HttpClient
/// (SocketsHttpHandler, keep-alive, one connection per worker at most) and send <c>GET /</c> to the sidecar at
/// <see cref="DemoOptions.RequestsPerSecond"/> in total. Request k is due at start + k / rate; a worker that is
/// early waits, one that is late sends at once (the rate is then capped by the concurrency); more than a second late,
/// the schedule moves on instead of bursting. A share
/// <see cref="DemoOptions.HeaderShare"/> of the requests carries <c>x-version: v2</c>. Each response is classified
/// by its <c>x-version</c> header, or as the proxy's own when it has <c>x-proxy-error</c>, and recorded in
/// <see cref="DemoStats"/> with its latency (send to body read).
/// </summary>
internal sealed class DemoClient : IDisposable
{
    public const string VersionHeader = "x-version";

    private readonly Uri _target;
    private readonly DemoOptions _options;
    private readonly TimeProvider _time;
    private readonly HttpClient _http;
    private readonly double _ticksPerRequest;
    private long _start;
    private long _nextSlot;

    public DemoClient(Uri target, DemoOptions options, TimeProvider time)
    {
        _target = target;
        _options = options;
        _time = time;
        _ticksPerRequest = options.RequestsPerSecond == 0 ? 0 : (double)time.TimestampFrequency / options.RequestsPerSecond;
        _http = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            MaxConnectionsPerServer = options.Concurrency,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        })
        {
            Timeout = TimeSpan.FromSeconds(10),
            DefaultRequestVersion = new Version(1, 1),
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
    }

    /// <summary>
    /// Sends a few requests per connection, with and without the header, that are not counted: JIT compilation and
    /// connection set-up in client, sidecar and versions would otherwise be the run's worst latencies.
    /// </summary>
    public Task WarmUpAsync(CancellationToken cancellationToken)
    {
        var workers = new Task[_options.Concurrency];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = WarmUpOneAsync(cancellationToken);
        }

        return Task.WhenAll(workers);
    }

    private async Task WarmUpOneAsync(CancellationToken cancellationToken)
    {
        await Task.Yield();
        for (var i = 0; i < 4; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, _target);
            if (i % 2 == 1)
            {
                request.Headers.TryAddWithoutValidation(VersionHeader, "v2");
            }

            try
            {
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            }
            catch (HttpRequestException)
            {
                // Failures show in the counted run.
            }
        }
    }

    /// <summary>Sends until <paramref name="cancellationToken"/> is cancelled; requests in flight then are abandoned, not counted.</summary>
    public Task RunAsync(DemoStats stats, CancellationToken cancellationToken)
    {
        _start = _time.GetTimestamp();
        var workers = new Task[_options.Concurrency];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = WorkerAsync(stats, cancellationToken);
        }

        return Task.WhenAll(workers);
    }

    private async Task WorkerAsync(DemoStats stats, CancellationToken cancellationToken)
    {
        // Leave the caller's thread at once, so starting the workers never runs a request inline.
        await Task.Yield();
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await PaceAsync(cancellationToken);
                await SendOneAsync(stats, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Waits until this worker's next request slot is due (no wait without a rate, or when late).</summary>
    private Task PaceAsync(CancellationToken cancellationToken)
    {
        if (_ticksPerRequest == 0)
        {
            return Task.CompletedTask;
        }

        var slot = Interlocked.Increment(ref _nextSlot) - 1;
        var offset = (long)(slot * _ticksPerRequest);
        var due = Volatile.Read(ref _start) + offset;
        var now = _time.GetTimestamp();
        if (now - due > _time.TimestampFrequency)
        {
            // More than a second behind (a stall, or a rate the connections cannot carry): move the schedule so
            // this slot is due now, rather than bursting to make up for the backlog.
            Volatile.Write(ref _start, now - offset);
            return Task.CompletedTask;
        }

        return due <= now ? Task.CompletedTask : Task.Delay(_time.GetElapsedTime(now, due), _time, cancellationToken);
    }

    private async Task SendOneAsync(DemoStats stats, CancellationToken cancellationToken)
    {
        var withHeader = _options.HeaderShare > 0 && Random.Shared.NextDouble() < _options.HeaderShare;
        using var request = new HttpRequestMessage(HttpMethod.Get, _target);
        if (withHeader)
        {
            request.Headers.TryAddWithoutValidation(VersionHeader, "v2");
        }

        var started = _time.GetTimestamp();
        DemoTarget target;
        bool succeeded;
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            target = Classify(response.Headers);
            succeeded = response.IsSuccessStatusCode;
        }
        catch (HttpRequestException)
        {
            target = DemoTarget.Failed;
            succeeded = false;
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // HttpClient.Timeout elapsed.
            target = DemoTarget.Failed;
            succeeded = false;
        }

        stats.Record(target, withHeader, succeeded, _time.GetElapsedTime(started));
    }

    internal static DemoTarget Classify(HttpResponseHeaders headers)
    {
        if (headers.Contains(Proxy.Http.Forwarding.ProxyErrors.HeaderName))
        {
            return DemoTarget.Proxy;
        }

        if (headers.TryGetValues(VersionHeader, out var values))
        {
            foreach (var value in values)
            {
                switch (value)
                {
                    case "v1":
                        return DemoTarget.V1;
                    case "v2":
                        return DemoTarget.V2;
                }
            }
        }

        return DemoTarget.Other;
    }

    public void Dispose() => _http.Dispose();
}
