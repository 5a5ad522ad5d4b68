using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

public sealed class HpackDecoderTests
{
    // RFC 7541 Appendix C: sequences of blocks on one connection, with the header lists and the final table size.
    public static TheoryData<string, int, string[], string[][], int> RfcExamples() => new()
    {
        { "C.2.1", 4096, ["400a637573746f6d2d6b65790d637573746f6d2d686561646572"], [["custom-key", "custom-header"]], 55 },
        { "C.2.2", 4096, ["040c2f73616d706c652f70617468"], [[":path", "/sample/path"]], 0 },
        { "C.2.3", 4096, ["100870617373776f726406736563726574"], [["password", "secret"]], 0 },
        { "C.2.4", 4096, ["82"], [[":method", "GET"]], 0 },
        {
            "C.3", 4096,
            ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865", "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"],
            [
                [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"],
                [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com", "cache-control", "no-cache"],
                [":method", "GET", ":scheme", "https", ":path", "/index.html", ":authority", "www.example.com", "custom-key", "custom-value"],
            ],
            164
        },
        {
            "C.4", 4096,
            ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf", "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"],
            [
                [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"],
                [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com", "cache-control", "no-cache"],
                [":method", "GET", ":scheme", "https", ":path", "/index.html", ":authority", "www.example.com", "custom-key", "custom-value"],
            ],
            164
        },
        {
            "C.5", 256,
            [
                "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
                "4803333037c1c0bf",
                "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31",
            ],
            [
                [":status", "302", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:21 GMT", "location", "https://www.example.com"],
                [":status", "307", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:21 GMT", "location", "https://www.example.com"],
                [":status", "200", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:22 GMT", "location", "https://www.example.com", "content-encoding", "gzip", "set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
            ],
            215
        },
        {
            "C.6", 256,
            [
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
                "4883640effc1c0bf",
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
            ],
            [
                [":status", "302", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:21 GMT", "location", "https://www.example.com"],
                [":status", "307", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:21 GMT", "location", "https://www.example.com"],
                [":status", "200", "cache-control", "private", "date", "Mon, 21 Oct 2013 20:13:22 GMT", "location", "https://www.example.com", "content-encoding", "gzip", "set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
            ],
            215
        },
    };

    public enum Feed
    {
        OnePiece,
        BytePerPiece,
        SegmentPerByte,
    }

    [Theory]
    [MemberData(nameof(RfcExamples))]
    public void Decode_RfcAppendixC_MatchesListsAndTableSize(string example, int tableSize, string[] blocks, string[][] lists, int finalSize)
    {
        foreach (var feed in Enum.GetValues<Feed>())
        {
            using var decoder = new HpackDecoder(tableSize);
            for (var i = 0; i < blocks.Length; i++)
            {
                var block = Hpack.Hex(blocks[i]);
                var decoded = feed switch
                {
                    Feed.OnePiece => Hpack.DecodeBlock(decoder, block),
                    Feed.BytePerPiece => Hpack.DecodeBytewise(decoder, block),
                    _ => Hpack.DecodeSegmentPerByte(decoder, block),
                };
                Assert.True(Hpack.List(lists[i]).SequenceEqual(decoded), $"{example} block {i} ({feed})");
            }

            Assert.Equal(finalSize, decoder.DynamicTable.Size);
        }
    }

    [Theory]
    [MemberData(nameof(RfcExamples))]
    public void Decode_BlockSplitAtEveryBoundary_SameResult(string example, int tableSize, string[] blocks, string[][] lists, int finalSize)
    {
        // Resumable contract: a prefix is consumed whole and only complete fields are delivered; the rest completes
        // the block. Every cut position of every block, with the table state of a real connection.
        for (var i = 0; i < blocks.Length; i++)
        {
            var block = Hpack.Hex(blocks[i]);
            for (var cut = 0; cut <= block.Length; cut++)
            {
                using var decoder = new HpackDecoder(tableSize);
                for (var j = 0; j < i; j++)
                {
                    Hpack.DecodeBlock(decoder, Hpack.Hex(blocks[j]));
                }

                var decoded = Hpack.DecodePieces(decoder, block, cut);
                Assert.True(Hpack.List(lists[i]).SequenceEqual(decoded), $"{example} block {i} cut {cut}");
                if (i == blocks.Length - 1)
                {
                    Assert.Equal(finalSize, decoder.DynamicTable.Size);
                }
            }
        }
    }

    [Fact]
    public void Decode_EveryPrefixWithEndHeaders_TruncatedUnlessAtFieldBoundary()
    {
        var block = Hpack.Hex("828684410f7777772e6578616d706c652e636f6d");
        int[] boundaries = [0, 1, 2, 3, block.Length];
        for (var i = 0; i <= block.Length; i++)
        {
            using var decoder = new HpackDecoder();
            var handler = new RecordingHandler();
            if (boundaries.Contains(i))
            {
                decoder.Decode(block.AsSpan(0, i), endHeaders: true, ref handler);
                Assert.Equal(Math.Min(i, 4), handler.Headers.Count);
            }
            else
            {
                var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(block.AsSpan(0, i), endHeaders: true, ref handler));
                Assert.Equal(HpackDecodingError.TruncatedBlock, e.Error);
                Assert.Equal(3, handler.Headers.Count);
            }
        }
    }

    [Fact]
    public void Decode_StaticReferences_UseStaticCallbacks()
    {
        using var decoder = new HpackDecoder();
        var handler = new RecordingHandler();
        // :method GET (indexed), :path /sample/path (static name), custom-key literal, then the dynamic entry.
        var block = Hpack.Hex("82" + "040c2f73616d706c652f70617468" + "400a637573746f6d2d6b65790d637573746f6d2d686561646572" + "be");
        decoder.Decode(block, endHeaders: true, ref handler);
        Assert.Equal("SsLL", handler.Kinds.ToString());
    }

    [Fact]
    public void Decode_NeverIndexedLiteral_ReportsFlagDuringCallback()
    {
        using var decoder = new HpackDecoder();
        var handler = new FlagHandler(decoder);
        decoder.Decode(Hpack.Hex("100870617373776f726406736563726574" + "82"), endHeaders: true, ref handler);
        Assert.Equal([true, false], handler.Flags);
    }

    [Theory]
    [InlineData("80")]         // index 0
    [InlineData("be")]         // 62 with an empty dynamic table
    [InlineData("7f00")]       // 127: far past the end
    [InlineData("7f01")]       // literal with indexing, name index 64: past the end
    [InlineData("0f30")]       // literal without indexing, name index 63: past the end
    public void Decode_BadIndex_Throws(string hex)
    {
        using var decoder = new HpackDecoder();
        var handler = new RecordingHandler();
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex(hex).AsSpan(), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.InvalidIndex, e.Error);
    }

    [Fact]
    public void Decode_SizeUpdateAboveAdvertisedLimit_Throws()
    {
        using var decoder = new HpackDecoder(4096);
        var handler = new RecordingHandler();
        // 001xxxxx with 4097: 3f e2 1f
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("3fe21f82"), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.TableSizeUpdateTooLarge, e.Error);
    }

    [Fact]
    public void Decode_SizeUpdatesAtBlockStart_ShrinkThenGrowAccepted()
    {
        using var decoder = new HpackDecoder(4096);
        Hpack.DecodeBlock(decoder, Hpack.Hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"));
        Assert.Equal(1, decoder.DynamicTable.Count);
        // Update to 0 (evicts everything), then to 4096 (3f e1 1f), then :method GET.
        var list = Hpack.DecodeBlock(decoder, Hpack.Hex("20" + "3fe11f" + "82"));
        Assert.Single(list);
        Assert.Equal(0, decoder.DynamicTable.Count);
        Assert.Equal(4096, decoder.DynamicTable.MaxSize);
    }

    [Fact]
    public void Decode_SizeUpdateAfterField_Throws()
    {
        using var decoder = new HpackDecoder();
        var handler = new RecordingHandler();
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("8220"), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.TableSizeUpdateNotAtStart, e.Error);
    }

    [Fact]
    public void Decode_SizeUpdateAfterFieldInLaterPiece_Throws()
    {
        using var decoder = new HpackDecoder();
        var handler = new RecordingHandler();
        decoder.Decode(Hpack.Hex("82"), endHeaders: false, ref handler);
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("20"), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.TableSizeUpdateNotAtStart, e.Error);
    }

    [Fact]
    public void Decode_SizeUpdateAtStartOfNextBlock_Accepted()
    {
        using var decoder = new HpackDecoder();
        Hpack.DecodeBlock(decoder, Hpack.Hex("82"));
        Hpack.DecodeBlock(decoder, Hpack.Hex("3f6182"));
        Assert.Equal(128, decoder.DynamicTable.MaxSize);
    }

    [Fact]
    public void SetMaxHeaderTableSize_Lowered_NextBlockMustStartWithUpdate()
    {
        using var decoder = new HpackDecoder();
        decoder.SetMaxHeaderTableSize(100);
        var handler = new RecordingHandler();
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("82"), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.TableSizeUpdateMissing, e.Error);

        using var second = new HpackDecoder();
        second.SetMaxHeaderTableSize(100);
        Assert.Single(Hpack.DecodeBlock(second, Hpack.Hex("3f4582"))); // update to 100, then :method GET
        Assert.Equal(100, second.DynamicTable.MaxSize);
    }

    [Fact]
    public void Decode_HeaderListTooLarge_ThrowsAtBlockEndAndKeepsTableInStep()
    {
        using var decoder = new HpackDecoder(maxHeaderListSize: 100);
        var handler = new RecordingHandler();
        // :method GET (42), custom-key: custom-header literal with indexing (55) -> 97, then :path / (38) -> over.
        var block = Hpack.Hex("82" + "400a637573746f6d2d6b65790d637573746f6d2d686561646572" + "84" + "400a637573746f6d2d6b65790c637573746f6d2d76616c7565");
        var e = Assert.Throws<HpackHeaderListTooLargeException>(() => decoder.Decode(block.AsSpan(), endHeaders: true, ref handler));
        Assert.Equal(100, e.Limit);
        Assert.Equal(42 + 55 + 38 + 54, e.Size);
        Assert.Equal(2, handler.Headers.Count);
        // Both literals with indexing were still added: the next block can reference them.
        Assert.Equal(2, decoder.DynamicTable.Count);
        var next = Hpack.DecodeBlock(decoder, Hpack.Hex("be"));
        Assert.Equal(("custom-key", "custom-value"), next[0]);
    }

    [Fact]
    public void Decode_StringLongerThanLimit_Throws()
    {
        using var decoder = new HpackDecoder(maxStringLength: 8);
        var handler = new RecordingHandler();
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("400a637573746f6d2d6b6579"), endHeaders: false, ref handler));
        Assert.Equal(HpackDecodingError.StringTooLong, e.Error);
    }

    [Fact]
    public void Decode_HuffmanWithBadPaddingSplitAcrossPieces_Throws()
    {
        using var decoder = new HpackDecoder();
        var handler = new RecordingHandler();
        // Literal without indexing, name :path (4), Huffman value of one byte 0x00 ('0' + 000 padding).
        decoder.Decode(Hpack.Hex("0481"), endHeaders: false, ref handler);
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("00"), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.InvalidHuffman, e.Error);
    }

    // A literal field without indexing, new name (raw), Huffman-coded value: what nginx sends for date and
    // content-length on every response.
    private static byte[] HuffmanLiteral(string name, string value)
    {
        var raw = Hpack.Bytes(value);
        var coded = new byte[HpackHuffman.EncodedLength(raw)];
        HpackHuffman.Encode(raw, coded);
        var block = new List<byte> { 0x00, (byte)name.Length };
        block.AddRange(Hpack.Bytes(name));
        if (coded.Length < 127)
        {
            block.Add((byte)(0x80 | coded.Length));
        }
        else
        {
            block.Add(0xFF);
            block.Add((byte)(coded.Length - 127));
        }

        block.AddRange(coded);
        return [.. block];
    }

    [Fact]
    public void Decode_RepeatedHuffmanValues_SameDecodingEveryTime()
    {
        // More distinct short values than the decoder remembers, coming back in a changing order, with lengths that
        // share prefixes ("1", "13", "130"): every block must decode to exactly what was coded.
        string[] values = ["1", "13", "130", "text/plain", "Sat, 28 Nov 2026 03:00:01 GMT", "Sat, 28 Nov 2026 03:00:02 GMT", "nginx",
            "application/grpc", "0", "x", "gzip", "no-cache", "private", new string('z', 60), "a" + new string('b', 70)];
        using var decoder = new HpackDecoder();
        var random = new Random(7);
        for (var round = 0; round < 200; round++)
        {
            var picked = Enumerable.Range(0, 4).Select(_ => values[random.Next(values.Length)]).ToArray();
            var block = picked.SelectMany((v, i) => HuffmanLiteral("f" + i, v)).ToArray();
            var expected = picked.Select((v, i) => ("f" + i, v)).ToList();
            Assert.Equal(expected, Hpack.DecodeBlock(decoder, block));
            Assert.Equal(expected, Hpack.DecodeBytewise(decoder, block));
        }
    }

    [Fact]
    public void Decode_InvalidHuffmanWholeInOnePiece_Throws()
    {
        // A valid one-byte coded value first ("1" is 00011 + 111 padding), so the invalid one of the same length
        // (0x00: '0' and 000 padding) meets a remembered decoding and must still be refused.
        using var decoder = new HpackDecoder();
        Assert.Equal([("a", "1")], Hpack.DecodeBlock(decoder, HuffmanLiteral("a", "1")));
        var handler = new RecordingHandler();
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("048100"), endHeaders: true, ref handler));
        Assert.Equal(HpackDecodingError.InvalidHuffman, e.Error);
    }

    [Fact]
    public void Decode_EmptyNameAndValue_Delivered()
    {
        using var decoder = new HpackDecoder();
        var list = Hpack.DecodeBytewise(decoder, Hpack.Hex("000000" + "008000" + "400080"));
        Assert.Equal([("", ""), ("", ""), ("", "")], list);
        Assert.Equal(32, decoder.DynamicTable.Size);
    }

    [Fact]
    public void Decode_LiteralNameSplitFromValue_NameSurvivesPieceEnd()
    {
        using var decoder = new HpackDecoder();
        var block = Hpack.Hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572");
        // Cut right after the name and in the middle of the value: the name must be copied out of the first piece.
        var list = Hpack.DecodePieces(decoder, block, 12, 16);
        Assert.Equal([("custom-key", "custom-header")], list);
    }

    [Fact]
    public void Decode_IntegerOverflowInIndex_Throws()
    {
        using var decoder = new HpackDecoder();
        var handler = new RecordingHandler();
        var e = Assert.Throws<HpackDecodingException>(() => decoder.Decode(Hpack.Hex("ff808080808080"), endHeaders: false, ref handler));
        Assert.Equal(HpackDecodingError.IntegerOverflow, e.Error);
    }

    private sealed class FlagHandler(HpackDecoder decoder) : IHpackHeaderHandler
    {
        public List<bool> Flags { get; } = [];

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Flags.Add(decoder.IsNeverIndexed);

        public void OnStaticIndexedHeader(int index) => Flags.Add(decoder.IsNeverIndexed);

        public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => Flags.Add(decoder.IsNeverIndexed);
    }
}
