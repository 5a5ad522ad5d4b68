using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

public sealed class HpackStaticTableTests
{
    [Fact]
    public void Entries_MatchAppendixA()
    {
        Assert.Equal(":authority", Hpack.Text(HpackStaticTable.Name(1)));
        Assert.Equal("GET", Hpack.Text(HpackStaticTable.Value(2)));
        Assert.Equal("gzip, deflate", Hpack.Text(HpackStaticTable.Value(16)));
        Assert.Equal("www-authenticate", Hpack.Text(HpackStaticTable.Name(61)));
        Assert.Equal("cookie", Hpack.Text(HpackStaticTable.Name(HpackStaticTable.Cookie)));
    }

    [Theory]
    [InlineData(":method", "GET", 2, true)]
    [InlineData(":method", "POST", 3, true)]
    [InlineData(":method", "PUT", 2, false)]
    [InlineData(":status", "404", 13, true)]
    [InlineData(":status", "201", 8, false)]
    [InlineData("accept-encoding", "gzip, deflate", 16, true)]
    [InlineData("user-agent", "curl", 58, false)]
    [InlineData("www-authenticate", "", 61, true)]
    [InlineData("x-unknown", "1", 0, false)]
    [InlineData("an-extremely-long-header-name-beyond-the-table", "1", 0, false)]
    public void Find_NameAndValue_ReturnsBestIndex(string name, string value, int index, bool full)
    {
        Assert.Equal(index, HpackStaticTable.Find(Hpack.Bytes(name), Hpack.Bytes(value), out var fullMatch));
        Assert.Equal(full, fullMatch);
    }

    [Fact]
    public void Find_EveryEntry_FindsItself()
    {
        for (var i = 1; i <= HpackStaticTable.Count; i++)
        {
            Assert.Equal(i, HpackStaticTable.Find(HpackStaticTable.Name(i), HpackStaticTable.Value(i), out var full));
            Assert.True(full);
        }
    }
}
