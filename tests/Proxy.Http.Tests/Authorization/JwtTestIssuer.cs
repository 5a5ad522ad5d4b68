using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Proxy.Tests.Jwt;

/// <summary>A test token issuer: RSA keys with key ids, their JWKS, and signed tokens (shared by the Http and Sidecar tests).</summary>
internal sealed class JwtTestIssuer : IDisposable
{
    public const string Issuer = "https://issuer.test";
    public const string Audience = "api";

    private readonly Dictionary<string, RSA> _keys = new(StringComparer.Ordinal);

    public JwtTestIssuer(params string[] kids)
    {
        foreach (var kid in kids)
        {
            AddKey(kid);
        }
    }

    public void AddKey(string kid) => _keys[kid] = RSA.Create(2048);

    /// <summary>The JWKS of the given keys (default: all).</summary>
    public string Jwks(params string[] kids)
    {
        var entries = new List<string>();
        foreach (var (kid, rsa) in _keys)
        {
            if (kids.Length != 0 && Array.IndexOf(kids, kid) < 0)
            {
                continue;
            }

            var p = rsa.ExportParameters(false);
            entries.Add($$"""{ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "{{kid}}", "n": "{{Base64UrlEncoder.Encode(p.Modulus)}}", "e": "{{Base64UrlEncoder.Encode(p.Exponent)}}" }""");
        }

        return $$"""{ "keys": [ {{string.Join(", ", entries)}} ] }""";
    }

    /// <summary>A token signed with key <paramref name="kid"/>; <paramref name="signWith"/> signs with another key under the same kid (bad signature).</summary>
    public string Token(string kid, string sub = "alice", string issuer = Issuer, string audience = Audience, TimeSpan? expiresIn = null,
        IDictionary<string, object>? claims = null, RSA? signWith = null)
    {
        var now = DateTime.UtcNow;
        var expires = now + (expiresIn ?? TimeSpan.FromMinutes(10));
        var notBefore = expires < now ? expires - TimeSpan.FromMinutes(10) : now - TimeSpan.FromMinutes(1);
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            Subject = new ClaimsIdentity([new Claim("sub", sub)]),
            Claims = claims,
            IssuedAt = notBefore,
            NotBefore = notBefore,
            Expires = expires,
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(signWith ?? _keys[kid]) { KeyId = kid }, SecurityAlgorithms.RsaSha256),
        };
        return new JsonWebTokenHandler().CreateToken(descriptor);
    }

    public void Dispose()
    {
        foreach (var rsa in _keys.Values)
        {
            rsa.Dispose();
        }
    }
}
