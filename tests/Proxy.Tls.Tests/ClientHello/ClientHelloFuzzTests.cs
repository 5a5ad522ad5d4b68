using Proxy.Tls.ClientHello;
using Proxy.Tls.Tests.TestSupport;

namespace Proxy.Tls.Tests.ClientHello;

/// <summary>
/// Random mutations of the real vectors (seeded, so a failure reproduces): the parser must never throw, and the span
/// and multi-segment paths must agree on every input.
/// </summary>
public sealed class ClientHelloFuzzTests
{
    private const int CasesPerVector = 3000;

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_RandomMutations_NeverThrowAndPathsAgree(string name)
    {
        var wire = ClientHelloVectors.Load(name);
        var fragmented = ClientHelloVectors.Fragment(ClientHelloVectors.Message(wire), 37);
        var random = new Random(name.Length * 7919 + wire.Length);
        var counts = new int[3];
        for (var i = 0; i < CasesPerVector; i++)
        {
            var source = (i & 1) == 0 ? wire : fragmented;
            var input = Mutate(source, random);
            var span = ClientHelloParserTests.Parse(input);
            counts[(int)span.Result.Status]++;

            // The same bytes cut into random segments.
            var cuts = RandomCuts(input.Length, random);
            var sequence = ClientHelloParserTests.Parse(TestSequences.Split(input, cuts));
            Assert.Equal(span with { Alpn = [] }, sequence with { Alpn = [] });
            Assert.Equal(span.Alpn, sequence.Alpn);
            if (span.Result.Status == ClientHelloStatus.Incomplete)
            {
                Assert.InRange(span.Result.BytesNeeded, input.Length + 1, ClientHelloParser.MaxWireLength);
            }
        }

        // The mutations reach every outcome (so the fuzzing is not just bouncing off the first check).
        Assert.All(counts, static c => Assert.True(c > 0));
    }

    [Fact]
    public void TryParse_RandomBytesAfterAValidHeader_NeverThrow()
    {
        var random = new Random(12345);
        for (var i = 0; i < 5000; i++)
        {
            var length = random.Next(0, 700);
            var input = new byte[5 + 4 + length];
            random.NextBytes(input);
            input[0] = 22;
            input[1] = 3;
            input[2] = (byte)random.Next(0, 5);
            input[3] = (byte)((length + 4) >> 8);
            input[4] = (byte)(length + 4);
            input[5] = 1;
            input[6] = 0;
            input[7] = (byte)(length >> 8);
            input[8] = (byte)length;
            var result = ClientHelloParserTests.Parse(input).Result;
            Assert.True(result.Status != ClientHelloStatus.Incomplete || result.BytesNeeded > input.Length);
        }
    }

    private static byte[] Mutate(byte[] source, Random random)
    {
        var bytes = new List<byte>(source);
        var edits = random.Next(1, 4);
        for (var e = 0; e < edits; e++)
        {
            switch (random.Next(6))
            {
                case 0: // flip a byte
                    var at = random.Next(bytes.Count);
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 1: // truncate
                    var keep = random.Next(bytes.Count);
                    bytes.RemoveRange(keep, bytes.Count - keep);
                    break;
                case 2: // insert bytes
                    var count = random.Next(1, 5);
                    var insertAt = random.Next(bytes.Count + 1);
                    for (var k = 0; k < count; k++)
                    {
                        bytes.Insert(insertAt, (byte)random.Next(256));
                    }

                    break;
                case 3: // delete bytes
                    if (bytes.Count > 2)
                    {
                        var from = random.Next(bytes.Count - 1);
                        bytes.RemoveRange(from, Math.Min(random.Next(1, 5), bytes.Count - from));
                    }

                    break;
                case 4: // nudge a byte by one (hits lengths more gently than a flip)
                    var n = random.Next(bytes.Count);
                    bytes[n] = (byte)(bytes[n] + (random.Next(2) == 0 ? 1 : -1));
                    break;
                default: // leave the hello valid (some cases stay parsable)
                    break;
            }

            if (bytes.Count == 0)
            {
                bytes.Add(22);
            }
        }

        return [.. bytes];
    }

    private static int[] RandomCuts(int length, Random random)
    {
        if (length < 2)
        {
            return [];
        }

        var cuts = new SortedSet<int>();
        var count = random.Next(1, 8);
        for (var i = 0; i < count; i++)
        {
            cuts.Add(random.Next(1, length));
        }

        return [.. cuts];
    }
}
