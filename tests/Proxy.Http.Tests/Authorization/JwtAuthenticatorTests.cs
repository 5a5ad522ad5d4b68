using System.Security.Cryptography;
using Proxy.Core.Configuration;
using Proxy.Http.Authorization;
using Proxy.Tests.Jwt;

namespace Proxy.Http.Tests.Authorization;

public sealed class JwtAuthenticatorTests : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly JwtTestIssuer _issuer = new("k1", "k2");
    private readonly string _jwksPath = Path.Combine(Path.GetTempPath(), $"jwks-{Guid.NewGuid():N}.json");
    private JwksSource _keys = null!;
    private JwtAuthenticator _jwt = null!;

    public async Task InitializeAsync()
    {
        await File.WriteAllTextAsync(_jwksPath, _issuer.Jwks("k1"));
        _keys = new JwksSource(_jwksPath, TimeSpan.FromHours(1), minMissInterval: TimeSpan.Zero);
        await _keys.StartAsync().WaitAsync(Timeout);
        _jwt = new JwtAuthenticator(new JwtConfig { Issuer = JwtTestIssuer.Issuer, Audiences = [JwtTestIssuer.Audience], Jwks = _jwksPath }, _keys);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    public void Dispose()
    {
        _keys.Dispose();
        _issuer.Dispose();
        File.Delete(_jwksPath);
    }

    private async Task<JwtResult> Validate(string token) => await _jwt.ValidateAsync(token).AsTask().WaitAsync(Timeout);

    [Fact]
    public async Task Valid_PrincipalAndClaims()
    {
        var result = await Validate(_issuer.Token("k1", claims: new Dictionary<string, object> { ["role"] = new[] { "user", "admin" }, ["tier"] = "gold" }));
        Assert.True(result.Ok, result.Reason);
        Assert.Equal("alice", result.Principal!.Subject);
        Assert.Equal("https://issuer.test/alice", result.Principal.Principal);
        Assert.True(result.Principal.HasClaimValue("role", ["admin"]));
        Assert.True(result.Principal.HasClaimValue("tier", ["gold"]));
        Assert.False(result.Principal.HasClaimValue("role", ["root"]));
    }

    [Fact]
    public async Task Expired_Refused() => AssertInvalid(await Validate(_issuer.Token("k1", expiresIn: TimeSpan.FromMinutes(-5))), "expired");

    [Fact]
    public async Task WrongIssuer_Refused() => AssertInvalid(await Validate(_issuer.Token("k1", issuer: "https://evil.test")), "issuer https://evil.test is not");

    [Fact]
    public async Task WrongAudience_Refused() => AssertInvalid(await Validate(_issuer.Token("k1", audience: "other")), "audience");

    [Fact]
    public async Task WrongSignature_Refused()
    {
        using var other = RSA.Create(2048);
        AssertInvalid(await Validate(_issuer.Token("k1", signWith: other)), "signature");
    }

    [Fact]
    public async Task UnknownKid_Refused() => AssertInvalid(await Validate(_issuer.Token("k2")), "unknown key");

    [Theory]
    [InlineData("not-a-jwt")]
    [InlineData("a.b.c")]
    public async Task Malformed_Refused(string token) => AssertInvalid(await Validate(token), "malformed");

    [Fact]
    public async Task UnknownKid_AfterRotation_RefreshedAndAccepted()
    {
        await File.WriteAllTextAsync(_jwksPath, _issuer.Jwks("k1", "k2"));
        var result = await Validate(_issuer.Token("k2"));
        Assert.True(result.Ok, result.Reason);
        Assert.Equal(2, _keys.Refreshes);
    }

    [Fact]
    public async Task UnknownKid_RefreshRateLimited()
    {
        using var limited = new JwksSource(_jwksPath, TimeSpan.FromHours(1), minMissInterval: TimeSpan.FromHours(1));
        await limited.StartAsync().WaitAsync(Timeout);
        var jwt = new JwtAuthenticator(_jwt.Config, limited);
        for (var i = 0; i < 5; i++)
        {
            _issuer.AddKey("k9-" + i);
            AssertInvalid(await jwt.ValidateAsync(_issuer.Token("k9-" + i)).AsTask().WaitAsync(Timeout), "unknown key");
        }

        Assert.Equal(2, limited.Refreshes); // the start, then one miss-caused refresh per interval
    }

    [Fact]
    public async Task BrokenJwksFile_KeepsOldKeys()
    {
        await File.WriteAllTextAsync(_jwksPath, "{ not json");
        Assert.False(await _keys.RefreshAsync().WaitAsync(Timeout));
        Assert.True((await Validate(_issuer.Token("k1"))).Ok);
    }

    [Theory]
    [InlineData("Bearer abc", "abc")]
    [InlineData("bearer   abc ", "abc")]
    [InlineData("Basic abc", null)]
    [InlineData("Bearer ", null)]
    public void TryGetBearer(string value, string? token)
    {
        var ok = JwtAuthenticator.TryGetBearer(System.Text.Encoding.ASCII.GetBytes(value), out var t);
        Assert.Equal(token is not null, ok);
        if (token is not null)
        {
            Assert.Equal(token, System.Text.Encoding.ASCII.GetString(t));
        }
    }

    private static void AssertInvalid(JwtResult result, string reason)
    {
        Assert.False(result.Ok);
        Assert.Equal(JwtAuthenticator.Invalid, result.Error);
        Assert.Contains(reason, result.Reason, StringComparison.Ordinal);
    }
}
