using System.Globalization;
using System.Net;
using System.Text.Json;
using Proxy.Bench.E2e.Infrastructure;

namespace Proxy.Bench.E2e.LoadTools;

/// <summary>One iperf3 test: <c>-t</c> seconds, <c>-R</c> for server-to-client, <c>-P</c> parallel streams.</summary>
internal sealed record Iperf3Request(IPEndPoint Target, TimeSpan Duration, bool Reverse, int ParallelStreams) : ILoadRequest;

/// <summary>The iperf3 client run with <c>--json</c>; throughput and bytes come from <c>end.sum_received</c>.</summary>
internal sealed class Iperf3Client : ILoadTool<Iperf3Request>
{
    private readonly string _executable;

    public Iperf3Client(string executable) => _executable = executable;

    public string Name => "iperf3";

    public async Task<LoadResult> RunAsync(Iperf3Request request, CancellationToken cancellationToken)
    {
        List<string> arguments =
        [
            "-c", request.Target.Address.ToString(),
            "-p", request.Target.Port.ToString(CultureInfo.InvariantCulture),
            "-t", request.Duration.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture),
            "--connect-timeout", "3000",
            "--json",
        ];
        if (request.Reverse)
        {
            arguments.Add("-R");
        }

        if (request.ParallelStreams > 1)
        {
            arguments.AddRange(["-P", request.ParallelStreams.ToString(CultureInfo.InvariantCulture)]);
        }

        // iperf3 answers "the server is busy" while it is still tearing the previous test down: retry briefly.
        for (var attempt = 1; ; attempt++)
        {
            var result = await ProcessRunner.RunAsync(_executable, arguments, request.Duration + TimeSpan.FromSeconds(20), cancellationToken);
            try
            {
                return Parse(result.StandardOutput);
            }
            catch (E2eException ex) when (attempt < 3 && ex.Message.Contains("busy", StringComparison.OrdinalIgnoreCase))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(300), cancellationToken);
            }
        }
    }

    /// <summary>Reads the client's JSON report; throws with iperf3's own error text when the test failed.</summary>
    public static LoadResult Parse(string json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            throw new E2eException("iperf3 printed no JSON");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw new E2eException($"iperf3 printed invalid JSON ({ex.Message}): {json[..Math.Min(json.Length, 200)]}", ex);
        }

        using var owned = document;
        var root = document.RootElement;
        if (root.TryGetProperty("error", out var error))
        {
            throw new E2eException($"iperf3: {error.GetString()}");
        }

        if (!root.TryGetProperty("end", out var end) || !end.TryGetProperty("sum_received", out var received))
        {
            throw new E2eException("iperf3 JSON has no end.sum_received");
        }

        var bytes = received.GetProperty("bytes").GetInt64();
        var seconds = received.GetProperty("seconds").GetDouble();
        var bitsPerSecond = received.GetProperty("bits_per_second").GetDouble();
        if (bytes <= 0)
        {
            throw new E2eException("iperf3 moved no bytes");
        }

        return new LoadResult(bytes, seconds, bitsPerSecond, 0, json);
    }
}

/// <summary>An iperf3 server on 127.0.0.1 and a free port, restarted by the scenario if it dies.</summary>
internal sealed class Iperf3Server : IAsyncDisposable
{
    private readonly ChildProcess _process;

    private Iperf3Server(ChildProcess process, IPEndPoint endPoint)
    {
        _process = process;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public bool IsRunning => !_process.HasExited;

    /// <summary>Starts the server on <paramref name="endPoint"/>, or on a free port when null.</summary>
    public static async Task<Iperf3Server> StartAsync(string executable, IPEndPoint? endPoint, CancellationToken cancellationToken)
    {
        endPoint ??= FreePorts.Next();
        string[] arguments = ["-s", "-B", endPoint.Address.ToString(), "-p", endPoint.Port.ToString(CultureInfo.InvariantCulture), "--forceflush"];
        var process = ChildProcess.Start("iperf3-server", executable, arguments);
        var listening = process.WaitForOutputAsync("Server listening");
        var finished = await Task.WhenAny(listening, process.Exited, Task.Delay(TimeSpan.FromSeconds(10), cancellationToken));
        if (finished != listening)
        {
            await process.DisposeAsync();
            cancellationToken.ThrowIfCancellationRequested();
            throw new E2eException($"iperf3 server did not start listening on {endPoint}:\n{process.RecentOutput}");
        }

        return new Iperf3Server(process, endPoint);
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
