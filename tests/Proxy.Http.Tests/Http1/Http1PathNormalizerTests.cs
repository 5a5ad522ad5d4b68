using System.Text;
using Proxy.Core.Configuration;
using Proxy.Http.Http1;

namespace Proxy.Http.Tests.Http1;

public sealed class Http1PathNormalizerTests
{
    private static string Normalize(string target, PathNormalization mode, Http1TargetForm form = Http1TargetForm.Origin)
    {
        var bytes = Encoding.ASCII.GetBytes(target);
        var destination = new byte[Http1PathNormalizer.MaxLength(bytes)];
        return Http1PathNormalizer.Normalize(bytes, form, mode, destination, out var written) switch
        {
            PathNormalizeResult.Changed => Encoding.ASCII.GetString(destination, 0, written),
            PathNormalizeResult.Unchanged => target,
            _ => "(rejected)",
        };
    }

    // RFC 3986 §5.2.4 and §6.2.2, Istio's BASE examples.
    [Theory]
    [InlineData("/", "/")]
    [InlineData("/a/b/c", "/a/b/c")]
    [InlineData("/index.html", "/index.html")]
    [InlineData("/a/../b", "/b")]
    [InlineData("/a/./b", "/a/b")]
    [InlineData("/a/b/../../c", "/c")]
    [InlineData("/a/b/..", "/a/")]
    [InlineData("/a/.", "/a/")]
    [InlineData("/.", "/")]
    [InlineData("/..", "/")]
    [InlineData("/../../etc/passwd", "/etc/passwd")]
    [InlineData("/a/..b/c", "/a/..b/c")]
    [InlineData("/a/.../c", "/a/.../c")]
    [InlineData("/a//b", "/a//b")]
    [InlineData("/a//../b", "/a/b")]
    [InlineData("/%61dmin", "/admin")]
    [InlineData("/%2e%2E/admin", "/admin")]
    [InlineData("/public/%2e%2e/admin", "/admin")]
    [InlineData("/a%2db%5Fc%7Ed", "/a-b_c~d")]
    [InlineData("/a%2Fb", "/a%2Fb")]
    [InlineData("/a%5cb", "/a%5cb")]
    [InlineData("/a%20b", "/a%20b")]
    [InlineData("/a%252e%252e/b", "/a%252e%252e/b")]
    [InlineData("/a%zz/b", "/a%25zz/b")]
    [InlineData("/a%2", "/a%252")]
    [InlineData("/a%", "/a%25")]
    // A stray '%' must not form a new escape with a decoded character: "%2%65" is not "%2e" (a dot the app would decode).
    [InlineData("/public/%2%65%2%65/admin", "/public/%252e%252e/admin")]
    [InlineData("/a\\..\\admin", "/admin")]
    [InlineData("/x/../y?q=/a/../b&c=%2e", "/y?q=/a/../b&c=%2e")]
    [InlineData("/a/b?", "/a/b?")]
    [InlineData("/a/./?x", "/a/?x")]
    public void Base(string target, string expected) => Assert.Equal(expected, Normalize(target, PathNormalization.Base));

    [Theory]
    [InlineData("/a//b", "/a/b")]
    [InlineData("//a///b//", "/a/b/")]
    [InlineData("//", "/")]
    [InlineData("/a/..//b", "/b")]
    [InlineData("/a%2F%2Fb", "/a%2F%2Fb")]
    public void MergeSlashes(string target, string expected) => Assert.Equal(expected, Normalize(target, PathNormalization.MergeSlashes));

    [Theory]
    [InlineData("/a%2fb", "/a/b")]
    [InlineData("/a%2F%2Fb", "/a/b")]
    [InlineData("/a%5Cb", "/a/b")]
    [InlineData("/public%2f..%2fadmin", "/admin")]
    public void DecodeAndMergeSlashes(string target, string expected) => Assert.Equal(expected, Normalize(target, PathNormalization.DecodeAndMergeSlashes));

    [Theory]
    [InlineData("/a/../b")]
    [InlineData("/%61")]
    [InlineData("/a//b")]
    public void None_LeavesEverything(string target) => Assert.Equal(target, Normalize(target, PathNormalization.None));

    [Theory]
    [InlineData("/a%00b")]
    [InlineData("/%00")]
    public void EncodedNul_Rejected(string target) => Assert.Equal("(rejected)", Normalize(target, PathNormalization.Base));

    [Fact]
    public void EncodedNulInQuery_NotThePathsBusiness() => Assert.Equal("/a?x=%00", Normalize("/a?x=%00", PathNormalization.Base));

    [Theory]
    [InlineData("http://h.example/a/../b?x", "http://h.example/b?x")]
    [InlineData("http://h.example:81/%61", "http://h.example:81/a")]
    [InlineData("http://h.example?x=/../", "http://h.example?x=/../")]
    [InlineData("http://h.example", "http://h.example")]
    public void AbsoluteForm_OnlyThePath(string target, string expected) =>
        Assert.Equal(expected, Normalize(target, PathNormalization.Base, Http1TargetForm.Absolute));

    [Fact]
    public void ConnectAndAsterisk_Untouched()
    {
        Assert.Equal("h.example:443", Normalize("h.example:443", PathNormalization.DecodeAndMergeSlashes, Http1TargetForm.Authority));
        Assert.Equal("*", Normalize("*", PathNormalization.DecodeAndMergeSlashes, Http1TargetForm.Asterisk));
    }

    /// <summary>Every path over a small alphabet: the result is normal (normalizing again changes nothing), never longer, and keeps the query.</summary>
    [Fact]
    public void Exhaustive_Idempotent_NeverLonger()
    {
        var alphabet = new[] { "/", ".", "a", "%2e", "%2f", "//", "\\", "%", "%2", "%65" };
        var count = 0;
        foreach (var mode in new[] { PathNormalization.Base, PathNormalization.MergeSlashes, PathNormalization.DecodeAndMergeSlashes })
        {
            foreach (var path in Paths(alphabet, 5))
            {
                var target = "/" + path + "?q=..";
                var once = Normalize(target, mode);
                Assert.NotEqual("(rejected)", once);
                Assert.True(once.Length <= target.Length + (2 * target.Count(c => c == '%')), $"{target} -> {once}");
                Assert.StartsWith("/", once, StringComparison.Ordinal);
                Assert.EndsWith("?q=..", once, StringComparison.Ordinal);
                var pathPart = once[..once.IndexOf('?', StringComparison.Ordinal)];
                Assert.DoesNotContain("/./", pathPart + "/", StringComparison.Ordinal);
                Assert.DoesNotContain("/../", pathPart + "/", StringComparison.Ordinal);
                // Every '%' left starts an escape that normalizing does not decode: nothing is decoded twice.
                for (var p = pathPart.IndexOf('%', StringComparison.Ordinal); p >= 0; p = pathPart.IndexOf('%', p + 1))
                {
                    Assert.True(p + 2 < pathPart.Length && Uri.IsHexDigit(pathPart[p + 1]) && Uri.IsHexDigit(pathPart[p + 2]), $"{target} -> {once}");
                }

                if (mode != PathNormalization.Base)
                {
                    Assert.DoesNotContain("//", pathPart, StringComparison.Ordinal);
                }

                Assert.Equal(once, Normalize(once, mode == PathNormalization.DecodeAndMergeSlashes ? PathNormalization.MergeSlashes : mode));
                count++;
            }
        }

        Assert.True(count > 10000, $"{count} paths");
    }

    /// <summary>Every sequence of up to <paramref name="length"/> parts of <paramref name="alphabet"/>.</summary>
    private static IEnumerable<string> Paths(string[] alphabet, int length)
    {
        yield return "";
        if (length == 0)
        {
            yield break;
        }

        foreach (var part in alphabet)
        {
            foreach (var rest in Paths(alphabet, length - 1))
            {
                yield return part + rest;
            }
        }
    }
}
