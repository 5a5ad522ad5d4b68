using System.Net;
using BenchmarkDotNet.Attributes;
using Proxy.Core.Addresses;
using Proxy.Core.Capture;

namespace Proxy.Bench.Micro;

/// <summary>
/// The per-connection cost of turning SO_ORIGINAL_DST's sockaddr into an endpoint, and of the loop guard.
/// Expected: only the IPEndPoint (+ IPAddress) allocated by a successful parse; nothing for failures or IsSelf.
/// (A sockaddr is one contiguous buffer from getsockopt, so there is no multi-segment variant.)
/// </summary>
[MemoryDiagnoser]
public class OriginalDestinationBenchmarks
{
    private readonly byte[] _sockaddrIn = new byte[16];
    private readonly byte[] _sockaddrIn6 = new byte[28];
    private readonly byte[] _truncated = new byte[10];
    private OriginalDestination _destination;
    private ListenAddress _listener;

    [GlobalSetup]
    public void Setup()
    {
        // 10.0.0.7:8080 and [2001:db8::7]:8080 as the kernel writes them (family in host order, port big-endian).
        BitConverter.TryWriteBytes(_sockaddrIn.AsSpan(0, 2), OriginalDestinationParser.AddressFamilyInet);
        _sockaddrIn[2] = 0x1f;
        _sockaddrIn[3] = 0x90;
        _sockaddrIn[4] = 10;
        _sockaddrIn[7] = 7;

        BitConverter.TryWriteBytes(_sockaddrIn6.AsSpan(0, 2), OriginalDestinationParser.AddressFamilyInet6);
        _sockaddrIn6[2] = 0x1f;
        _sockaddrIn6[3] = 0x90;
        IPAddress.Parse("2001:db8::7").TryWriteBytes(_sockaddrIn6.AsSpan(8, 16), out _);

        _sockaddrIn.AsSpan(0, _truncated.Length).CopyTo(_truncated);
        _destination = new OriginalDestination(new IPEndPoint(IPAddress.Parse("10.0.0.7"), 8080));
        _listener = new ListenAddress(new IPEndPoint(IPAddress.Parse("::ffff:127.0.0.1"), 15001));
    }

    [Benchmark(Baseline = true)]
    public IPEndPoint? ParseIpv4() => OriginalDestinationParser.TryParse(_sockaddrIn, out var endPoint) ? endPoint : null;

    [Benchmark]
    public IPEndPoint? ParseIpv6() => OriginalDestinationParser.TryParse(_sockaddrIn6, out var endPoint) ? endPoint : null;

    [Benchmark]
    public bool ParseTruncated() => OriginalDestinationParser.TryParse(_truncated, out _);

    [Benchmark]
    public bool IsSelfMappedListener() => RedirectLoopGuard.IsSelf(_destination, _listener);
}
