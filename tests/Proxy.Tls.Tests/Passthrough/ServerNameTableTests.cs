using Proxy.Tls.Passthrough;

namespace Proxy.Tls.Tests.Passthrough;

public sealed class ServerNameTableTests
{
    private static ServerNameTable<string> Table(params string[] patterns)
        => new(patterns.Select(static p => new KeyValuePair<string, string>(p, p)));

    [Theory]
    [InlineData("api.example.com", "api.example.com")]
    [InlineData("API.Example.COM", "api.example.com")]
    [InlineData("x.example.com", "*.example.com")]
    [InlineData("x.y.example.com", "*.example.com")]
    [InlineData("x.b.example.com", "*.b.example.com")]
    [InlineData("x.y.b.example.com", "*.b.example.com")]
    [InlineData("b.example.com", "*.example.com")]
    [InlineData("exact.b.example.com", "exact.b.example.com")]
    public void TryMatch_MostSpecificWins(string name, string expected)
    {
        var table = Table("*.example.com", "*.b.example.com", "api.example.com", "exact.b.example.com");
        Assert.True(table.TryMatch(name, out var value));
        Assert.Equal(expected, value);
    }

    [Theory]
    [InlineData("example.com")]
    [InlineData("example.org")]
    [InlineData("")]
    [InlineData("com")]
    [InlineData("xexample.com")]
    public void TryMatch_NoMatch(string name)
    {
        var table = Table("*.example.com", "api.example.org");
        Assert.False(table.TryMatch(name, out var value));
        Assert.Null(value);
    }

    [Theory]
    [InlineData("*")]
    [InlineData("*.")]
    [InlineData("a.*.com")]
    [InlineData("**.example.com")]
    [InlineData("exa mple.com")]
    [InlineData("example.com.")]
    public void Constructor_InvalidPattern_Throws(string pattern)
    {
        Assert.Throws<ArgumentException>(() => Table(pattern));
    }

    [Fact]
    public void Constructor_DuplicateIgnoringCase_Throws()
    {
        Assert.Throws<ArgumentException>(() => Table("a.example.com", "A.example.com"));
        Assert.Throws<ArgumentException>(() => Table("*.example.com", "*.EXAMPLE.com"));
    }

    [Fact]
    public void TryMatch_DoesNotAllocate()
    {
        var table = Table("*.example.com", "api.example.com");
        table.TryMatch("warm.x.example.com", out _);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            table.TryMatch("a.b.c.example.com", out _);
            table.TryMatch("API.example.com", out _);
            table.TryMatch("nothing.example.org", out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
