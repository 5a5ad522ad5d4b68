using System.Buffers;
using BenchmarkDotNet.Attributes;
using Proxy.Tls.ClientHello;
using Proxy.Tls.Passthrough;

namespace Proxy.Bench.Micro;

/// <summary>
/// The TLS ClientHello peek parser (TLS passthrough by SNI): a real 517-byte curl ClientHello (SNI, ALPN h2/http/1.1,
/// TLS 1.3 key shares; tests/Proxy.Tls.Tests/ClientHello/Vectors/curl-http2.hex) parsed in place from one span, from a
/// three-segment sequence (copied first), and fragmented over three records (reassembled into scratch); plus the SNI
/// match against a small route table. Every operation must show 0 B allocated (the per-connection SNI string that the
/// sidecar keeps for logs is made after parsing and is not measured here).
/// </summary>
[MemoryDiagnoser]
public class ClientHelloParserBenchmarks
{
    private const string CurlHelloHex =
        "1603010200010001fc0303ba06ff47ea890ffef5aacecfb7e00bab795ea6a34f167824b2bcb32f51b9e3f620c2a3ac8488c917eec6fd032677f9e2eb84b2a32f" +
        "3d25f3731c1faa3f4ffc5044003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d" +
        "009c003d003c0035002f00ff010001750000001500130000106375726c2e6578616d706c652e636f6d000b000403000102000a00160014001d0017001e001900" +
        "18010001010102010301040010000e000c02683208687474702f312e31001600000017000000310000000d002a0028040305030603080708080809080a080b08" +
        "0408050806040105010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00203c051adaefcda9620beced09" +
        "9ba8d28bbf38b5a14b442244b569a836e2f24826001500ad00000000000000000000000000000000000000000000000000000000000000000000000000000000" +
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" +
        "0000000000";

    private readonly byte[] _scratch = new byte[ClientHelloParser.SequenceScratchLength];
    private byte[] _single = [];
    private byte[] _fragmented = [];
    private ReadOnlySequence<byte> _multi;
    private ServerNameTable<string> _table = null!;

    [GlobalSetup]
    public void Setup()
    {
        _single = Convert.FromHexString(CurlHelloHex);
        _multi = Split(_single, 3);
        var message = _single.AsSpan(5).ToArray();
        var fragments = new List<byte>();
        for (var i = 0; i < message.Length; i += 200)
        {
            var n = Math.Min(200, message.Length - i);
            fragments.AddRange(new byte[] { 22, 3, 1, (byte)(n >> 8), (byte)n });
            fragments.AddRange(message.AsSpan(i, n));
        }

        _fragmented = [.. fragments];
        _table = new ServerNameTable<string>(
        [
            new("api.example.com", "api"),
            new("*.example.com", "wildcard"),
            new("*.internal.example.com", "internal"),
            new("curl.example.org", "other"),
        ]);
    }

    [Benchmark(Baseline = true)]
    public int ParseSingleRecordSpan() => Summarise(ClientHelloParser.TryParse(_single, out var hello), hello);

    [Benchmark]
    public int ParseMultiSegmentSequence() => Summarise(ClientHelloParser.TryParse(_multi, _scratch, out var hello), hello);

    [Benchmark]
    public int ParseFragmentedRecords() => Summarise(ClientHelloParser.TryParse(_fragmented, _scratch, out var hello), hello);

    [Benchmark]
    public int ParseAndMatchSni()
    {
        var result = ClientHelloParser.TryParse(_single, out var hello);
        Span<char> name = stackalloc char[ServerNameSyntax.MaxLength];
        var n = hello.CopyServerNameLower(name);
        return _table.TryMatch(name[..n], out var service) ? service!.Length + result.BytesNeeded : 0;
    }

    private static int Summarise(ClientHelloResult result, ClientHelloInfo hello)
    {
        var alpn = 0;
        foreach (var protocol in hello.AlpnProtocols)
        {
            alpn += protocol.Length;
        }

        return result.BytesNeeded + hello.ServerName.Length + alpn + (int)hello.Flags;
    }

    private static ReadOnlySequence<byte> Split(byte[] bytes, int parts)
    {
        var size = (bytes.Length + parts - 1) / parts;
        var first = new Segment(bytes.AsMemory(0, Math.Min(size, bytes.Length)), 0);
        var last = first;
        for (var i = size; i < bytes.Length; i += size)
        {
            last = last.Append(bytes.AsMemory(i, Math.Min(size, bytes.Length - i)));
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
