using System.Net;

namespace Proxy.Bench.E2e.LoadTools;

/// <summary>What every load run has: where to connect and for how long.</summary>
internal interface ILoadRequest
{
    IPEndPoint Target { get; }

    TimeSpan Duration { get; }
}

/// <summary>
/// What a load run produced. <see cref="Bytes"/> is payload moved in the measured direction; <see cref="Operations"/>
/// counts requests for HTTP tools (0 for byte-stream tools).
/// </summary>
internal sealed record LoadResult(long Bytes, double Seconds, double BitsPerSecond, long Operations, string Raw);

/// <summary>
/// A load generator run to completion against a target (iperf3). wrk (<see cref="WrkClient"/>) and h2load
/// (<see cref="H2loadClient"/>) return their own richer results instead (<see cref="WrkResult"/>,
/// <see cref="H2loadResult"/>: latency figures, error counts).
/// </summary>
internal interface ILoadTool<in TRequest>
    where TRequest : ILoadRequest
{
    string Name { get; }

    Task<LoadResult> RunAsync(TRequest request, CancellationToken cancellationToken);
}
