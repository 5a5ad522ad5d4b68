using Proxy.Http.Http2.Hpack;

namespace Proxy.Http.Tests.Http2.Hpack;

public sealed class HpackDynamicTableTests
{
    [Fact]
    public void Add_Entries_SizeIsNamePlusValuePlus32AndNewestFirst()
    {
        var table = new HpackDynamicTable(4096);
        table.Add("a"u8, "1"u8);
        table.Add("bb"u8, "22"u8);
        Assert.Equal(2, table.Count);
        Assert.Equal(34 + 36, table.Size);
        Assert.Equal("bb", Hpack.Text(table.Name(0)));
        Assert.Equal("1", Hpack.Text(table.Value(1)));
    }

    [Fact]
    public void Add_BeyondMaxSize_EvictsOldestFirst()
    {
        var table = new HpackDynamicTable(100);
        table.Add("aaaa"u8, "1111"u8); // 40
        table.Add("bbbb"u8, "2222"u8); // 40
        table.Add("cccc"u8, "3333"u8); // 40: evicts aaaa
        Assert.Equal(2, table.Count);
        Assert.Equal(80, table.Size);
        Assert.Equal("cccc", Hpack.Text(table.Name(0)));
        Assert.Equal("bbbb", Hpack.Text(table.Name(1)));
    }

    [Fact]
    public void Add_EntryLargerThanMaxSize_EmptiesTable()
    {
        var table = new HpackDynamicTable(64);
        table.Add("a"u8, "1"u8);
        table.Add("a"u8, new byte[40]);
        Assert.Equal(0, table.Count);
        Assert.Equal(0, table.Size);
    }

    [Fact]
    public void Add_ManyEntriesAroundTheBuffer_KeepsContentsIntact()
    {
        // Entries of varied sizes force the byte buffer to compact many times.
        var table = new HpackDynamicTable(256);
        var reference = new List<(string, string)>();
        for (var i = 0; i < 500; i++)
        {
            var name = "n" + new string((char)('a' + (i % 26)), i % 7);
            var value = new string('v', i % 61) + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            table.Add(Hpack.Bytes(name), Hpack.Bytes(value));
            reference.Insert(0, (name, value));
            var size = 0;
            var keep = 0;
            foreach (var (n, v) in reference)
            {
                if (size + n.Length + v.Length + 32 > 256)
                {
                    break;
                }

                size += n.Length + v.Length + 32;
                keep++;
            }

            reference.RemoveRange(keep, reference.Count - keep);
            Assert.Equal(reference.Count, table.Count);
            Assert.Equal(size, table.Size);
            for (var j = 0; j < reference.Count; j++)
            {
                Assert.Equal(reference[j].Item1, Hpack.Text(table.Name(j)));
                Assert.Equal(reference[j].Item2, Hpack.Text(table.Value(j)));
            }
        }
    }

    [Fact]
    public void Add_NameReferencingOwnOldestEntry_CopiesNameBeforeEviction()
    {
        var table = new HpackDynamicTable(90);
        table.Add("x-name-one"u8, "value-one"u8); // 51
        table.Add("x-two"u8, "v"u8);              // 38, total 89
        // The new entry's name is the oldest entry's name, which must be evicted to make room.
        table.Add(table.Name(1), "another-value"u8);
        Assert.Equal("x-name-one", Hpack.Text(table.Name(0)));
        Assert.Equal("another-value", Hpack.Text(table.Value(0)));
    }

    [Fact]
    public void SetMaxSize_Smaller_EvictsAndZeroEmpties()
    {
        var table = new HpackDynamicTable(4096);
        table.Add("a"u8, "1"u8);
        table.Add("b"u8, "2"u8);
        table.SetMaxSize(40);
        Assert.Equal(1, table.Count);
        Assert.Equal("b", Hpack.Text(table.Name(0)));
        table.SetMaxSize(0);
        Assert.Equal(0, table.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => table.SetMaxSize(4097));
    }

    [Fact]
    public void Find_FullAndNameMatches_ReturnsNewest()
    {
        var table = new HpackDynamicTable(4096);
        table.Add("k"u8, "1"u8);
        table.Add("k"u8, "2"u8);
        Assert.Equal(1, table.Find("k"u8, "1"u8, out var full));
        Assert.True(full);
        Assert.Equal(0, table.Find("k"u8, "3"u8, out full));
        Assert.False(full);
        Assert.Equal(-1, table.Find("z"u8, "1"u8, out _));
    }

    [Fact]
    public void EnsureCapacity_Grow_KeepsEntries()
    {
        var table = new HpackDynamicTable(100);
        table.Add("a"u8, "1"u8);
        table.Add("b"u8, "2"u8);
        table.EnsureCapacity(1000);
        table.SetMaxSize(1000);
        Assert.Equal("b", Hpack.Text(table.Name(0)));
        Assert.Equal("1", Hpack.Text(table.Value(1)));
    }
}
