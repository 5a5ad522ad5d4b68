using Proxy.Core.Configuration;
using System.Text;
using Proxy.Http.Routing;

namespace Proxy.Http.Tests.Routing;

public sealed class QueryReaderTests
{
    private static string Walk(string query)
    {
        var bytes = Encoding.ASCII.GetBytes(query);
        var reader = new QueryReader(bytes);
        var sb = new StringBuilder();
        while (reader.Next(out var name, out var value))
        {
            sb.Append('[').Append(Encoding.ASCII.GetString(name)).Append('|').Append(Encoding.ASCII.GetString(value)).Append(']');
        }

        return sb.ToString();
    }

    [Theory]
    [InlineData("", "")]
    [InlineData("a=1&b", "[a|1][b|]")]
    [InlineData("a=1&a=2", "[a|1][a|2]")]
    [InlineData("&&a=&", "[a|]")]
    [InlineData("=v", "[|v]")]
    [InlineData("a=b=c", "[a|b=c]")]
    [InlineData("a=%20&b=+", "[a|%20][b|+]")]
    [InlineData("a=1#frag&b=2", "[a|1]")]
    public void Next_VariousQueries_YieldsRawPairsInOrder(string query, string expected)
    {
        Assert.Equal(expected, Walk(query));
    }
}
