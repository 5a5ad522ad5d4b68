using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

/// <summary>
/// Deterministic mutation testing: thousands of single-byte edits of valid messages. Whatever the codec
/// decides must not depend on how the bytes are segmented, and nothing but <see cref="Http1ParseException"/>
/// may escape (no IndexOutOfRange, no overflow).
/// </summary>
public sealed class Http1MutationTests
{
    private static readonly string[] Requests =
    [
        "POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;e=\"q\"\r\nhello\r\n0\r\nT: v\r\n\r\nGET /n HTTP/1.0\r\n\r\n",
        "\r\nCONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nExpect: 100-continue\r\n\r\nxyz",
    ];

    private static readonly string[] Responses =
    [
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: T\r\n\r\na\r\n0123456789\r\n0\r\nT: 1\r\n\r\nHTTP/1.0 200 OK\r\n\r\nrest",
    ];

    private static readonly byte[] Interesting = [(byte)'\r', (byte)'\n', (byte)' ', (byte)'\t', (byte)':', (byte)';', (byte)',', (byte)'0', (byte)'9', (byte)'a', (byte)'F', (byte)'"', (byte)'\\', (byte)'=', 0, 0x7F, 0xFF, (byte)'/', (byte)'H'];

    [Fact]
    public void MutatedRequests_SameVerdictInEverySegmentation()
    {
        var random = new Random(20261126);
        foreach (var text in Requests)
        {
            var original = TestSequences.Ascii(text);
            for (var i = 0; i < 1500; i++)
            {
                var mutated = Mutate(original, random);
                var single = Summarize(Http1TestDriver.RunRequests(TestSequences.Single(mutated), Http1ParserOptions.Default));
                var perByte = Summarize(Http1TestDriver.RunRequests(TestSequences.SegmentPerByte(mutated), Http1ParserOptions.Default));
                var cut = random.Next(1, mutated.Length);
                var split = Summarize(Http1TestDriver.RunRequests(TestSequences.Split(mutated, cut), Http1ParserOptions.Default));
                Assert.True(single == perByte && single == split, $"{Escape(mutated)}\nsingle:   {single}\nper-byte: {perByte}\nsplit@{cut}: {split}");
            }
        }
    }

    [Fact]
    public void MutatedResponses_SameVerdictInEverySegmentation()
    {
        var random = new Random(11262026);
        foreach (var text in Responses)
        {
            var original = TestSequences.Ascii(text);
            for (var i = 0; i < 1500; i++)
            {
                var mutated = Mutate(original, random);
                var single = Summarize(Http1TestDriver.RunResponses(TestSequences.Single(mutated), Http1ParserOptions.Default));
                var perByte = Summarize(Http1TestDriver.RunResponses(TestSequences.SegmentPerByte(mutated), Http1ParserOptions.Default));
                Assert.True(single == perByte, $"{Escape(mutated)}\nsingle:   {single}\nper-byte: {perByte}");
            }
        }
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        var bytes = new List<byte>(original);
        var edits = random.Next(1, 3);
        for (var e = 0; e < edits; e++)
        {
            var at = random.Next(bytes.Count);
            var b = Interesting[random.Next(Interesting.Length)];
            switch (random.Next(3))
            {
                case 0:
                    bytes[at] = b;
                    break;
                case 1:
                    bytes.Insert(at, b);
                    break;
                default:
                    bytes.RemoveAt(at);
                    break;
            }
        }

        return bytes.ToArray();
    }

    private static string Summarize(DriverResult result)
    {
        var parts = new List<string> { result.Outcome.ToString(), result.Error?.ToString() ?? "-", result.UnreadBytes.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        foreach (var m in result.Messages)
        {
            parts.Add($"[{m.Method} {m.Target} {m.Status} {m.Version} {m.BodyKind} ka={m.KeepAlive} c={m.Complete} " +
                $"h={string.Join(",", m.Headers)} t={string.Join(",", m.Trailers)} b={TestSequences.Text(m.Body.ToArray())}]");
        }

        return string.Join(" ", parts);
    }

    private static string Escape(byte[] bytes) => TestSequences.Text(bytes).Replace("\r", "\\r", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
