using System.Buffers;
using Proxy.Tls.ClientHello;
using Proxy.Tls.Tests.TestSupport;
using static Proxy.Tls.Tests.ClientHello.TestHelloBuilder;

namespace Proxy.Tls.Tests.ClientHello;

public sealed class ClientHelloParserTests
{
    /// <summary>A parse result with the view copied out (ClientHelloInfo is a ref struct).</summary>
    internal sealed record Parsed(ClientHelloResult Result, string? ServerName, string[] Alpn, bool OffersTls13, ushort LegacyVersion, ushort MaxVersion, ClientHelloFlags Flags);

    internal static Parsed Parse(ReadOnlySpan<byte> input, bool scratch = true)
    {
        var buffer = scratch ? new byte[ClientHelloParser.MaxMessageLength] : [];
        var result = ClientHelloParser.TryParse(input, buffer, out var hello);
        return Snapshot(result, hello);
    }

    internal static Parsed Parse(ReadOnlySequence<byte> input)
    {
        var buffer = new byte[ClientHelloParser.SequenceScratchLength];
        var result = ClientHelloParser.TryParse(input, buffer, out var hello);
        return Snapshot(result, hello);
    }

    private static Parsed Snapshot(ClientHelloResult result, ClientHelloInfo hello)
    {
        var alpn = new List<string>();
        foreach (var p in hello.AlpnProtocols)
        {
            alpn.Add(ClientHelloVectors.Ascii(p));
        }

        return new Parsed(result, hello.GetServerName(), [.. alpn], hello.OffersTls13, hello.LegacyVersion, hello.MaxVersion, hello.Flags);
    }

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_CapturedVector_ReturnsSniAlpnAndVersions(string name)
    {
        var wire = ClientHelloVectors.Load(name);
        var expected = ClientHelloVectors.Expectation(name);

        var parsed = Parse(wire, scratch: false);

        Assert.Equal(ClientHelloStatus.Parsed, parsed.Result.Status);
        Assert.Equal(wire.Length, parsed.Result.BytesNeeded);
        Assert.Equal(expected.ServerName, parsed.ServerName);
        Assert.Equal(expected.Alpn, parsed.Alpn);
        Assert.Equal(expected.OffersTls13, parsed.OffersTls13);
        Assert.Equal(0x0303, parsed.LegacyVersion);
        Assert.Equal(expected.OffersTls13 ? 0x0304 : 0x0303, parsed.MaxVersion);
        Assert.Equal(expected.ServerName is not null, (parsed.Flags & ClientHelloFlags.HasServerName) != 0);
        Assert.Equal(expected.Alpn.Contains("h2"), (parsed.Flags & ClientHelloFlags.OffersH2) != 0);
        Assert.Equal(expected.Alpn.Contains("http/1.1"), (parsed.Flags & ClientHelloFlags.OffersHttp11) != 0);
        Assert.Equal(ClientHelloFlags.None, parsed.Flags & ClientHelloFlags.Reassembled);
    }

    [Fact]
    public void TryParse_MixedCaseSni_RawSpanKeepsCaseAndStringIsLowerCase()
    {
        var wire = Wire(ServerName("Mixed.Case.Example.com"));
        ClientHelloParser.TryParse(wire, out var hello);
        Assert.Equal("Mixed.Case.Example.com", ClientHelloVectors.Ascii(hello.ServerName));
        Span<char> lower = stackalloc char[ServerNameSyntax.MaxLength];
        var n = hello.CopyServerNameLower(lower);
        Assert.Equal("mixed.case.example.com", new string(lower[..n]));
    }

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_EveryPrefix_IsIncompleteWithGrowingNeed(string name)
    {
        var wire = ClientHelloVectors.Load(name);
        for (var length = 0; length < wire.Length; length++)
        {
            var result = ClientHelloParser.TryParse(wire.AsSpan(0, length), out _);
            Assert.Equal(ClientHelloStatus.Incomplete, result.Status);
            Assert.InRange(result.BytesNeeded, length + 1, wire.Length);
        }
    }

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_SegmentPerByte_SameAsOneSegment(string name)
    {
        var wire = ClientHelloVectors.Load(name);
        var single = Parse(new ReadOnlySequence<byte>(wire));
        var perByte = Parse(TestSequences.SegmentPerByte(wire));
        Assert.Equal(ClientHelloStatus.Parsed, single.Result.Status);
        Assert.Equal(single with { Alpn = [] }, perByte with { Alpn = [] });
        Assert.Equal(single.Alpn, perByte.Alpn);

        // Every prefix, one segment per byte: incomplete.
        for (var length = 2; length < wire.Length; length += 7)
        {
            var prefix = TestSequences.SegmentPerByte(wire[..length]);
            Assert.Equal(ClientHelloStatus.Incomplete, Parse(prefix).Result.Status);
        }
    }

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_FragmentedOverRecords_ReassemblesIntoScratch(string name)
    {
        var wire = ClientHelloVectors.Load(name);
        var message = ClientHelloVectors.Message(wire);
        var expected = Parse(wire);
        var smallest = (message.Length + ClientHelloParser.MaxRecords - 1) / ClientHelloParser.MaxRecords;
        foreach (var size in new[] { smallest, smallest + 1, 5, 100, message.Length - 1 }.Where(s => s >= smallest))
        {
            var fragmented = ClientHelloVectors.Fragment(message, size);
            var parsed = Parse(fragmented);
            Assert.Equal(ClientHelloStatus.Parsed, parsed.Result.Status);
            Assert.Equal(fragmented.Length, parsed.Result.BytesNeeded);
            Assert.Equal(expected.ServerName, parsed.ServerName);
            Assert.Equal(expected.Alpn, parsed.Alpn);
            Assert.Equal(expected.Flags | ClientHelloFlags.Reassembled, parsed.Flags);

            // Without scratch the fragmented hello cannot be returned as one span.
            Assert.Equal(ClientHelloError.ScratchTooSmall, ClientHelloParser.TryParse(fragmented, out _).Error);

            // As a sequence, one segment per byte.
            Assert.Equal(parsed with { Alpn = [] }, Parse(TestSequences.SegmentPerByte(fragmented)) with { Alpn = [] });

            for (var length = 0; length < fragmented.Length; length++)
            {
                var result = ClientHelloParser.TryParse(fragmented.AsSpan(0, length), new byte[ClientHelloParser.MaxMessageLength], out _);
                Assert.Equal(ClientHelloStatus.Incomplete, result.Status);
                Assert.InRange(result.BytesNeeded, length + 1, fragmented.Length);
            }
        }
    }

    [Fact]
    public void TryParse_MoreThanMaxRecords_TooManyRecords()
    {
        var message = ClientHelloVectors.Message(ClientHelloVectors.Load("curl-http2"));
        var fragmented = ClientHelloVectors.Fragment(message, 1);
        Assert.Equal(ClientHelloError.TooManyRecords, Parse(fragmented).Result.Error);
    }

    [Fact]
    public void TryParse_MaxRecordsCompleteButHelloIsNot_TooManyRecordsWithoutAskingForMore()
    {
        // 64 complete one-byte records of a longer hello: the 65th record could only be too many.
        var message = ClientHelloVectors.Message(ClientHelloVectors.Load("curl-http2"));
        var fragmented = ClientHelloVectors.Fragment(message, 1)[..(ClientHelloParser.MaxRecords * 6)];
        Assert.Equal(ClientHelloError.TooManyRecords, Parse(fragmented).Result.Error);
        var oneLess = fragmented[..((ClientHelloParser.MaxRecords - 1) * 6)];
        var result = Parse(oneLess).Result;
        Assert.Equal(ClientHelloStatus.Incomplete, result.Status);
        Assert.Equal(oneLess.Length + 5, result.BytesNeeded);
    }

    [Fact]
    public void TryParse_LargestMessageOverMaxRecords_NeedsAtMostMaxWireLength()
    {
        // 64 records, the last one incomplete: what is asked for never exceeds MaxWireLength.
        var padding = ClientHelloParser.MaxMessageLength - Message(ServerName("big.example.com")).Length - 4;
        var largest = Message(ServerName("big.example.com"), (21, new byte[padding]));
        var size = (largest.Length + ClientHelloParser.MaxRecords - 1) / ClientHelloParser.MaxRecords;
        var fragmented = ClientHelloVectors.Fragment(largest, size);
        Assert.Equal(ClientHelloParser.MaxWireLength, fragmented.Length);
        Assert.Equal(ClientHelloStatus.Parsed, Parse(fragmented).Result.Status);
        for (var cut = fragmented.Length - 300; cut < fragmented.Length; cut++)
        {
            var result = Parse(fragmented.AsSpan(0, cut)).Result;
            Assert.Equal(ClientHelloStatus.Incomplete, result.Status);
            Assert.InRange(result.BytesNeeded, cut + 1, ClientHelloParser.MaxWireLength);
        }
    }

    [Fact]
    public void TryParse_RecordOfAnotherTypeBetweenFragments_UnexpectedRecordType()
    {
        var message = ClientHelloVectors.Message(ClientHelloVectors.Load("curl-http2"));
        var fragmented = ClientHelloVectors.Fragment(message, 100);
        fragmented[105] = 23; // the second record becomes application_data
        Assert.Equal(ClientHelloError.UnexpectedRecordType, Parse(fragmented).Result.Error);
    }

    [Fact]
    public void TryParse_BytesAfterTheHello_AreNotExamined()
    {
        var wire = ClientHelloVectors.Load("curl-http2");
        byte[] withTrailer = [.. wire, 23, 3, 3, 0, 5, 1, 2, 3];
        var parsed = Parse(withTrailer);
        Assert.Equal(ClientHelloStatus.Parsed, parsed.Result.Status);
        Assert.Equal(wire.Length, parsed.Result.BytesNeeded);
    }

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_EveryLengthFieldMutated_NeverParses(string name)
    {
        var wire = ClientHelloVectors.Load(name);
        var fields = ClientHelloVectors.LengthFields(wire);
        Assert.True(fields.Count > 8);
        foreach (var field in fields)
        {
            var original = ReadField(wire, field);
            foreach (var value in new long[] { original + 1, original - 1, 0, (1L << (8 * field.Width)) - 1 })
            {
                if (value < 0 || value == original || value >= 1L << (8 * field.Width))
                {
                    continue;
                }

                var mutated = (byte[])wire.Clone();
                WriteField(mutated, field, value);
                var result = Parse(mutated).Result;
                if (field.What == "record" && value > original && value <= 16384)
                {
                    // A record longer than the hello is fine (it may carry the next handshake message): the hello is
                    // complete, and what follows it is not examined.
                    Assert.Equal(ClientHelloStatus.Parsed, result.Status);
                    continue;
                }

                Assert.True(result.Status != ClientHelloStatus.Parsed, $"{name}: {field.What} at {field.Offset} = {value} (was {original}) still parsed");
                if (field.What is not ("record" or "handshake"))
                {
                    // The record and message are complete: a nested length cannot make it "incomplete".
                    Assert.True(result.Status == ClientHelloStatus.Invalid, $"{name}: {field.What} = {value}: {result}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(ClientHelloVectors.Names), MemberType = typeof(ClientHelloVectors))]
    public void TryParse_EveryTruncationOfTheMessage_IsInvalid(string name)
    {
        // Cut the message short but keep the record and handshake lengths consistent with the cut: a truncated body.
        var wire = ClientHelloVectors.Load(name);
        var message = ClientHelloVectors.Message(wire);
        var compression = ClientHelloVectors.LengthFields(wire).Single(static f => f.What == "compression_methods").Offset;
        var endOfFixedPart = compression - 9 + 1 + wire[compression];
        for (var bodyLength = 41; bodyLength < message.Length - 4; bodyLength++)
        {
            if (bodyLength == endOfFixedPart)
            {
                continue; // a ClientHello without extensions: valid (checked in TryParse_NoExtensions_ParsedWithoutSniOrAlpn)
            }

            var cut = message[..(4 + bodyLength)];
            cut[1] = (byte)(bodyLength >> 16);
            cut[2] = (byte)(bodyLength >> 8);
            cut[3] = (byte)bodyLength;
            var result = Parse(ClientHelloVectors.Record(cut)).Result;
            Assert.True(result.Status == ClientHelloStatus.Invalid, $"{name}: body cut to {bodyLength}: {result}");
        }
    }

    [Fact]
    public void TryParse_NotTls_NotHandshake()
    {
        Assert.Equal(ClientHelloError.NotHandshake, Parse("GET / HTTP/1.1\r\n\r\n"u8).Result.Error);
        Assert.Equal(ClientHelloError.NotHandshake, Parse([0x17]).Result.Error);
    }

    [Theory]
    [InlineData(new byte[] { 22, 2 }, ClientHelloError.BadRecordVersion)]
    [InlineData(new byte[] { 22, 3, 5 }, ClientHelloError.BadRecordVersion)]
    [InlineData(new byte[] { 22, 3, 1, 0x41 }, ClientHelloError.BadRecordLength)]
    [InlineData(new byte[] { 22, 3, 1, 0, 0 }, ClientHelloError.BadRecordLength)]
    [InlineData(new byte[] { 22, 3, 1, 0x40, 1 }, ClientHelloError.BadRecordLength)]
    [InlineData(new byte[] { 22, 3, 1, 0, 4, 2 }, ClientHelloError.NotClientHello)]
    [InlineData(new byte[] { 22, 3, 1, 0, 4, 1, 0, 0x40, 0 }, ClientHelloError.Oversize)]
    [InlineData(new byte[] { 22, 3, 1, 0, 4, 1, 0, 0, 40 }, ClientHelloError.BadHandshakeLength)]
    public void TryParse_BadHeaders_RejectedAsSoonAsSeen(byte[] input, ClientHelloError error)
    {
        Assert.Equal(error, Parse(input).Result.Error);
    }

    [Fact]
    public void TryParse_LargestMessage_Accepted_OneMore_Oversize()
    {
        // A padding extension (21) that brings the message to exactly MaxMessageLength, then one byte more.
        var baseMessage = Message(ServerName("big.example.com"));
        var padding = ClientHelloParser.MaxMessageLength - baseMessage.Length - 4;
        var largest = Message(ServerName("big.example.com"), (21, new byte[padding]));
        Assert.Equal(ClientHelloParser.MaxMessageLength, largest.Length);
        var parsed = Parse(ClientHelloVectors.Fragment(largest, 16384));
        Assert.Equal(ClientHelloStatus.Parsed, parsed.Result.Status);
        Assert.Equal("big.example.com", parsed.ServerName);
        Assert.True(ClientHelloVectors.Fragment(largest, 16384).Length <= ClientHelloParser.MaxWireLength);

        var over = Message(ServerName("big.example.com"), (21, new byte[padding + 1]));
        Assert.Equal(ClientHelloError.Oversize, Parse(ClientHelloVectors.Fragment(over, 16384)).Result.Error);
    }

    [Fact]
    public void TryParse_NoExtensions_ParsedWithoutSniOrAlpn()
    {
        var parsed = Parse(ClientHelloVectors.Record(Message(withExtensions: false)));
        Assert.Equal(ClientHelloStatus.Parsed, parsed.Result.Status);
        Assert.Null(parsed.ServerName);
        Assert.Empty(parsed.Alpn);
        Assert.Equal(0x0303, parsed.MaxVersion);
    }

    [Fact]
    public void TryParse_DuplicateExtension_Invalid()
    {
        Assert.Equal(ClientHelloError.DuplicateExtension, Parse(Wire(ServerName("a.example"), Alpn("h2"), ServerName("b.example"))).Result.Error);
        Assert.Equal(ClientHelloError.DuplicateExtension, Parse(Wire((0x1234, []), (0x1234, [1]))).Result.Error);
    }

    [Fact]
    public void TryParse_ManyDistinctExtensions_UsesTheBitSetAndStillFindsDuplicates()
    {
        var distinct = Enumerable.Range(100, 200).Select(static t => ((ushort)t, Array.Empty<byte>())).ToArray();
        Assert.Equal(ClientHelloStatus.Parsed, Parse(Wire([.. distinct, ServerName("many.example")])).Result.Status);
        Assert.Equal(ClientHelloError.DuplicateExtension, Parse(Wire([.. distinct, ((ushort)150, [])])).Result.Error);
    }

    [Fact]
    public void TryParse_PreSharedKeyNotLast_Invalid()
    {
        Assert.Equal(ClientHelloError.PskNotLast, Parse(Wire((41, [0, 0]), ServerName("a.example"))).Result.Error);
        var last = Parse(Wire(ServerName("a.example"), (35, [1, 2]), (42, []), (41, [0, 0])));
        Assert.Equal(ClientHelloStatus.Parsed, last.Result.Status);
        Assert.Equal(ClientHelloFlags.HasServerName | ClientHelloFlags.HasSessionTicket | ClientHelloFlags.HasEarlyData | ClientHelloFlags.HasPreSharedKey, last.Flags);
    }

    [Theory]
    [InlineData("exa mple.com")]
    [InlineData("example.com.")]
    [InlineData(".example.com")]
    [InlineData("a..b")]
    [InlineData("-a.example")]
    [InlineData("a-.example")]
    [InlineData("a.example/x")]
    [InlineData("ünicode.example")]
    public void TryParse_ServerNameNotADnsName_InvalidServerName(string host)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(host);
        Assert.Equal(ClientHelloError.InvalidServerName, Parse(Wire(ServerNameRaw(bytes))).Result.Error);
    }

    [Fact]
    public void TryParse_ServerNameLimits()
    {
        var label63 = new string('a', 63);
        var name253 = string.Join('.', label63, label63, label63, new string('b', 61));
        Assert.Equal(name253, Parse(Wire(ServerName(name253))).ServerName);
        Assert.Equal(ClientHelloError.InvalidServerName, Parse(Wire(ServerName(name253 + "b"))).Result.Error);
        Assert.Equal(ClientHelloError.InvalidServerName, Parse(Wire(ServerName(new string('a', 64) + ".example"))).Result.Error);
        Assert.Equal("under_score.example", Parse(Wire(ServerName("Under_Score.example"))).ServerName);
        Assert.Equal("10.0.0.1", Parse(Wire(ServerName("10.0.0.1"))).ServerName);
    }

    [Fact]
    public void TryParse_MalformedServerNameExtension_Invalid()
    {
        var two = System.Text.Encoding.ASCII.GetBytes("a.example");
        Assert.Equal(ClientHelloError.BadServerNameExtension, Parse(Wire(ServerNameRaw(two, two))).Result.Error);
        Assert.Equal(ClientHelloError.BadServerNameExtension, Parse(Wire((0, [0, 0]))).Result.Error);
        Assert.Equal(ClientHelloError.BadServerNameExtension, Parse(Wire((0, []))).Result.Error);
        Assert.Equal(ClientHelloError.BadServerNameExtension, Parse(Wire((0, [0, 3, 0, 0, 0]))).Result.Error);

        // An unknown name type is skipped; the host_name after it is read.
        byte[] other = [0, 17, 9, 0, 2, 0xAB, 0xCD, 0, 0, 9, .. two];
        Assert.Equal(other.Length - 2, (other[0] << 8) | other[1]);
        Assert.Equal("a.example", Parse(Wire((0, other))).ServerName);
    }

    [Fact]
    public void TryParse_MalformedAlpn_Invalid()
    {
        Assert.Equal(ClientHelloError.BadAlpnExtension, Parse(Wire((16, [0, 0]))).Result.Error);
        Assert.Equal(ClientHelloError.BadAlpnExtension, Parse(Wire((16, [0, 3, 2, (byte)'h', (byte)'2', 0]))).Result.Error);
        Assert.Equal(ClientHelloError.BadAlpnExtension, Parse(Wire((16, [0, 1, 0]))).Result.Error);
        Assert.Equal(ClientHelloError.BadAlpnExtension, Parse(Wire((16, [0]))).Result.Error);
        Assert.Equal(["h2", "grpc-exp", "http/1.1"], Parse(Wire(Alpn("h2", "grpc-exp", "http/1.1"))).Alpn);
    }

    [Fact]
    public void TryParse_SupportedVersions_GreaseIgnoredAndMalformedRejected()
    {
        var parsed = Parse(Wire(SupportedVersions(0x3A3A, 0x0304, 0x0303)));
        Assert.True(parsed.OffersTls13);
        Assert.Equal(0x0304, parsed.MaxVersion);
        Assert.Equal(0x0303, Parse(Wire(SupportedVersions(0x0303, 0x0302))).MaxVersion);
        Assert.Equal(ClientHelloError.BadSupportedVersionsExtension, Parse(Wire((43, [3, 3, 4, 3]))).Result.Error);
        Assert.Equal(ClientHelloError.BadSupportedVersionsExtension, Parse(Wire((43, [0]))).Result.Error);
        Assert.Equal(ClientHelloError.BadSupportedVersionsExtension, Parse(Wire((43, []))).Result.Error);
    }

    [Fact]
    public void TryParse_FixedFieldLengths_Checked()
    {
        var message = Message(ServerName("a.example"));
        var sessionId = (byte[])message.Clone();
        sessionId[4 + 34] = 33;
        Assert.Equal(ClientHelloError.BadSessionIdLength, Parse(ClientHelloVectors.Record(sessionId)).Result.Error);
        var odd = (byte[])message.Clone();
        odd[4 + 36] = 3;
        Assert.Equal(ClientHelloError.BadCipherSuitesLength, Parse(ClientHelloVectors.Record(odd)).Result.Error);
        var noCompression = (byte[])message.Clone();
        noCompression[4 + 39] = 0;
        Assert.Equal(ClientHelloError.BadCompressionMethodsLength, Parse(ClientHelloVectors.Record(noCompression)).Result.Error);
    }

    [Fact]
    public void AlpnEnumerator_HandMadeBadList_StopsWithoutThrowing()
    {
        // The parser only hands out validated lists, but the enumerator re-checks bounds anyway.
        var count = 0;
        foreach (var _ in new AlpnEnumerator([2, (byte)'h', (byte)'2', 9, 1]))
        {
            count++;
        }

        Assert.Equal(1, count);
    }

    private static long ReadField(byte[] wire, ClientHelloVectors.LengthField field)
    {
        long value = 0;
        for (var i = 0; i < field.Width; i++)
        {
            value = (value << 8) | wire[field.Offset + i];
        }

        return value;
    }

    private static void WriteField(byte[] wire, ClientHelloVectors.LengthField field, long value)
    {
        for (var i = field.Width - 1; i >= 0; i--)
        {
            wire[field.Offset + i] = (byte)value;
            value >>= 8;
        }
    }
}
