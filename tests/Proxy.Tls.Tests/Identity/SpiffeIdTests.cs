using Proxy.Tls.Identity;

namespace Proxy.Tls.Tests.Identity;

public sealed class SpiffeIdTests
{
    [Theory]
    [InlineData("spiffe://cluster.local/ns/default/sa/web", "cluster.local", "/ns/default/sa/web", "default", "web")]
    [InlineData("spiffe://example.org", "example.org", "", null, null)]
    [InlineData("spiffe://a-b_c.9/x", "a-b_c.9", "/x", null, null)]
    [InlineData("spiffe://td/ns/a/sa/b/extra", "td", "/ns/a/sa/b/extra", null, null)]
    [InlineData("spiffe://td/ns/a/sb/b", "td", "/ns/a/sb/b", null, null)]
    [InlineData("spiffe://td/Upper/Case.-_9", "td", "/Upper/Case.-_9", null, null)]
    [InlineData("spiffe://td/ns/..a/sa/b.", "td", "/ns/..a/sa/b.", "..a", "b.")]
    public void TryParse_Valid_SplitsParts(string text, string trustDomain, string path, string? ns, string? sa)
    {
        Assert.True(SpiffeId.TryParse(text, out var id, out var error), error);
        Assert.Equal(text, id.Uri);
        Assert.Equal(text, id.ToString());
        Assert.Equal(trustDomain, id.TrustDomain);
        Assert.Equal(path, id.Path);
        Assert.Equal(ns, id.Namespace);
        Assert.Equal(sa, id.ServiceAccount);
        Assert.Equal(ns is not null, id.IsKubernetesWorkload);
        Assert.Equal(path.Length == 0, id.IsTrustDomainId);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("https://cluster.local/ns/a/sa/b", "does not start with spiffe://")]
    [InlineData("SPIFFE://cluster.local/ns/a/sa/b", "does not start with spiffe://")]
    [InlineData("spiffe:/cluster.local", "does not start with spiffe://")]
    [InlineData("spiffe://", "no trust domain")]
    [InlineData("spiffe:///ns/a", "no trust domain")]
    [InlineData("spiffe://Cluster.local/ns/a", "lower case")]
    [InlineData("spiffe://cluster.local:8080/ns/a", "no port")]
    [InlineData("spiffe://user@cluster.local/ns/a", "no user info")]
    [InlineData("spiffe://cluster.local/ns/a?x=1", "no query")]
    [InlineData("spiffe://cluster.local?x=1", "no query")]
    [InlineData("spiffe://cluster.local/ns/a#f", "no fragment")]
    [InlineData("spiffe://cluster.local/ns/a%20b", "no percent-encoding")]
    [InlineData("spiffe://cluster.local/", "ends with '/'")]
    [InlineData("spiffe://cluster.local/ns/a/", "ends with '/'")]
    [InlineData("spiffe://cluster.local//ns", "empty segment")]
    [InlineData("spiffe://cluster.local/ns/./sa", "'.' segment")]
    [InlineData("spiffe://cluster.local/ns/../sa", "'..' segment")]
    [InlineData("spiffe://cluster.local/ns/a b", "character ' '")]
    [InlineData("spiffe://clu$ter/ns", "character '$'")]
    [InlineData("spiffe://cluster.local/ns/ä", "character 'ä'")]
    public void TryParse_Invalid_SaysWhy(string text, string reason)
    {
        Assert.False(SpiffeId.TryParse(text, out var id, out var error));
        Assert.Null(id);
        Assert.Contains(reason, error, StringComparison.Ordinal);
        var thrown = Assert.Throws<FormatException>(() => SpiffeId.Parse(text));
        Assert.Equal(error, thrown.Message);
    }

    [Fact]
    public void TryParse_Null_Invalid()
    {
        Assert.False(SpiffeId.TryParse(null, out _, out var error));
        Assert.Contains("empty", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryParse_Lengths_EnforcesLimits()
    {
        var longestDomain = new string('a', SpiffeId.MaxTrustDomainLength);
        Assert.True(SpiffeId.TryParse("spiffe://" + longestDomain, out _, out _));
        Assert.False(SpiffeId.TryParse("spiffe://" + longestDomain + "a", out _, out var domainError));
        Assert.Contains("longer than 255", domainError, StringComparison.Ordinal);

        var prefix = "spiffe://td/";
        var longest = prefix + new string('x', SpiffeId.MaxLength - prefix.Length);
        Assert.True(SpiffeId.TryParse(longest, out _, out _));
        Assert.False(SpiffeId.TryParse(longest + "x", out _, out var lengthError));
        Assert.Contains("longer than 2048", lengthError, StringComparison.Ordinal);
    }

    [Fact]
    public void ForKubernetesWorkload_BuildsAndValidates()
    {
        var id = SpiffeId.ForKubernetesWorkload("cluster.local", "prod", "api");
        Assert.Equal("spiffe://cluster.local/ns/prod/sa/api", id.Uri);
        Assert.Equal("prod", id.Namespace);
        Assert.Throws<FormatException>(() => SpiffeId.ForKubernetesWorkload("Cluster", "prod", "api"));
        Assert.Throws<FormatException>(() => SpiffeId.ForKubernetesWorkload("td", "", "api"));
        Assert.Equal("spiffe://td", SpiffeId.ForTrustDomain("td").Uri);
        Assert.Throws<FormatException>(() => SpiffeId.ForTrustDomain("td/x"));
    }

    [Fact]
    public void Equality_OrdinalOnText()
    {
        var a = SpiffeId.Parse("spiffe://td/ns/a/sa/b");
        var b = SpiffeId.Parse("spiffe://td/ns/a/sa/b");
        var c = SpiffeId.Parse("spiffe://td/ns/a/sa/B");
        Assert.True(a == b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.True(a != c);
        Assert.False(a.Equals(null));
    }

    [Fact]
    public void IdentityPattern_Kinds_MatchAsDocumented()
    {
        var web = SpiffeId.Parse("spiffe://cluster.local/ns/prod/sa/web");
        var other = SpiffeId.Parse("spiffe://other.org/ns/prod/sa/web");
        Assert.True(IdentityPattern.Any.Matches(web));
        Assert.True(IdentityPattern.Exact(web).Matches(SpiffeId.Parse(web.Uri)));
        Assert.False(IdentityPattern.Exact(web).Matches(other));
        Assert.True(IdentityPattern.TrustDomain("cluster.local").Matches(web));
        Assert.False(IdentityPattern.TrustDomain("cluster.local").Matches(other));
        Assert.True(IdentityPattern.Namespace("cluster.local", "prod").Matches(web));
        Assert.False(IdentityPattern.Namespace("cluster.local", "dev").Matches(web));
        Assert.False(IdentityPattern.Namespace("other.org", "prod").Matches(web));
        Assert.True(IdentityPattern.Prefix("spiffe://cluster.local/ns/prod/").Matches(web));
        Assert.False(IdentityPattern.Prefix("spiffe://cluster.local/ns/dev/").Matches(web));
        Assert.True(IdentityPattern.AnyOf(IdentityPattern.Exact(other), IdentityPattern.TrustDomain("cluster.local")).Matches(web));
        Assert.Throws<FormatException>(() => IdentityPattern.Prefix("https://x"));
        Assert.Equal("spiffe://other.org/ns/prod/sa/web or any identity in trust domain cluster.local",
            IdentityPattern.AnyOf(IdentityPattern.Exact(other), IdentityPattern.TrustDomain("cluster.local")).ToString());
    }

    [Theory]
    [InlineData("*", "spiffe://any.org/x", true)]
    [InlineData("spiffe://cluster.local/*", "spiffe://cluster.local/ns/a/sa/b", true)]
    [InlineData("spiffe://cluster.local/*", "spiffe://other.org/ns/a/sa/b", false)]
    [InlineData("spiffe://cluster.local/ns/prod/*", "spiffe://cluster.local/ns/prod/sa/web", true)]
    [InlineData("spiffe://cluster.local/ns/prod/*", "spiffe://cluster.local/ns/production/sa/web", false)]
    [InlineData("spiffe://cluster.local/ns/prod/*", "spiffe://cluster.local/ns/dev/sa/web", false)]
    [InlineData("spiffe://cluster.local/batch/*", "spiffe://cluster.local/batch/nightly", true)]
    [InlineData("spiffe://cluster.local/batch/*", "spiffe://cluster.local/batchx/nightly", false)]
    [InlineData("spiffe://cluster.local/ns/prod/sa/web", "spiffe://cluster.local/ns/prod/sa/web", true)]
    [InlineData("spiffe://cluster.local/ns/prod/sa/web", "spiffe://cluster.local/ns/prod/sa/api", false)]
    public void IdentityPattern_TryParse_Matches(string pattern, string id, bool matches)
    {
        Assert.True(IdentityPattern.TryParse(pattern, out var parsed, out var error), error);
        Assert.Equal(matches, parsed.Matches(SpiffeId.Parse(id)));
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/*/sa/web", "'*' may only be")]
    [InlineData("spiffe://Cluster/*", "lower case")]
    [InlineData("web", "does not start with spiffe://")]
    [InlineData("", "empty")]
    public void IdentityPattern_TryParse_Invalid(string pattern, string reason)
    {
        Assert.False(IdentityPattern.TryParse(pattern, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }
}
