using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

/// <summary>The hpack-test-case corpus: every implementation's stories decode exactly; raw-data stories round-trip through our encoder.</summary>
public sealed class HpackCorpusTests
{
    public static TheoryData<string> WireStories()
    {
        var data = new TheoryData<string>();
        foreach (var story in HpackCorpus.Stories.Where(s => s.Cases.All(c => c.Wire is not null)))
        {
            data.Add(story.ToString());
        }

        return data;
    }

    public static TheoryData<string> RawStories()
    {
        var data = new TheoryData<string>();
        foreach (var story in HpackCorpus.Stories.Where(s => s.Implementation == "raw-data"))
        {
            data.Add(story.Name);
        }

        return data;
    }

    [Fact]
    public void Corpus_IsPresent_HasStoriesOfSeveralImplementations()
    {
        Assert.True(HpackCorpus.Stories.Select(s => s.Implementation).Distinct().Count() >= 5);
        Assert.Equal(32, HpackCorpus.Stories.Count(s => s.Implementation == "raw-data"));
    }

    [Theory]
    [MemberData(nameof(WireStories))]
    public void Decode_Story_MatchesHeadersExactly(string id)
    {
        var story = Find(id);
        using var decoder = new HpackDecoder();
        using var bytewise = new HpackDecoder();
        for (var i = 0; i < story.Cases.Count; i++)
        {
            var c = story.Cases[i];
            Assert.True(c.Headers.SequenceEqual(Hpack.DecodeBlock(decoder, c.Wire!)), $"{id} case {i}");
            Assert.True(c.Headers.SequenceEqual(Hpack.DecodeBytewise(bytewise, c.Wire!)), $"{id} case {i} byte per piece");
        }
    }

    [Theory]
    [MemberData(nameof(RawStories))]
    public void EncodeDecode_RawDataStory_RoundTripsExactly(string name)
    {
        var story = HpackCorpus.Find("raw-data", name);
        var encoder = new HpackEncoder();
        using var decoder = new HpackDecoder();
        using var split = new HpackDecoder();
        for (var i = 0; i < story.Cases.Count; i++)
        {
            var headers = story.Cases[i].Headers;
            var block = Hpack.EncodeBlock(encoder, headers);
            Assert.True(headers.SequenceEqual(Hpack.DecodeBlock(decoder, block)), $"{name} case {i}");
            Assert.True(headers.SequenceEqual(Hpack.DecodePieces(split, block, block.Length / 3, block.Length / 2)), $"{name} case {i} split");
            Assert.Equal(decoder.DynamicTable.Size, encoder.DynamicTable.Size);
        }
    }

    private static HpackStory Find(string id)
    {
        var slash = id.IndexOf('/', StringComparison.Ordinal);
        return HpackCorpus.Find(id[..slash], id[(slash + 1)..]);
    }
}
