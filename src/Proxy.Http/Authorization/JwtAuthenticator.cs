using System.Security.Claims;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Proxy.Core.Configuration;

namespace Proxy.Http.Authorization;

/// <summary>The outcome of validating a request's token: a principal, or the reason code and sentence of a 401.</summary>
public readonly record struct JwtResult(JwtPrincipal? Principal, string? Error, string? Reason)
{
    public bool Ok => Error is null;
}

/// <summary>
/// Validates JWT bearer tokens for one <see cref="JwtConfig"/> with Microsoft.IdentityModel.JsonWebTokens: signature
/// against the JWKS keys (<see cref="JwksSource"/>), issuer, audience (when configured), lifetime (exp required,
/// 30 s clock skew). A token naming an unknown <c>kid</c> triggers a (rate-limited) JWKS refresh before it is refused.
/// Each validation allocates (the library works on strings); only requests on JWT-protected listeners or routes pay.
/// </summary>
public sealed class JwtAuthenticator
{
    /// <summary>Reason code of a 401 for a missing token (required).</summary>
    public const string Missing = "jwt_missing";

    /// <summary>Reason code of a 401 for a token that failed validation.</summary>
    public const string Invalid = "jwt_invalid";

    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };

    public JwtAuthenticator(JwtConfig config, JwksSource keys)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(keys);
        Config = config;
        Keys = keys;
        FromHeader = Encoding.ASCII.GetBytes(config.FromHeader);
        ForwardSubjectHeader = config.ForwardSubjectHeader is { } h ? Encoding.ASCII.GetBytes(h) : null;
    }

    public JwtConfig Config { get; }

    public JwksSource Keys { get; }

    /// <summary>The header carrying the token (lower case).</summary>
    public byte[] FromHeader { get; }

    /// <summary>The header the subject goes upstream in (lower case), or null.</summary>
    public byte[]? ForwardSubjectHeader { get; }

    /// <summary>The token of a <c>Bearer</c> credential, or false when the value is not one.</summary>
    public static bool TryGetBearer(ReadOnlySpan<byte> value, out ReadOnlySpan<byte> token)
    {
        value = value.Trim(" \t"u8);
        if (value.Length > 7 && Ascii.EqualsIgnoreCase(value[..7], "bearer "u8))
        {
            token = value[7..].TrimStart(" "u8);
            return !token.IsEmpty;
        }

        token = default;
        return false;
    }

    public async ValueTask<JwtResult> ValidateAsync(string token, CancellationToken cancellationToken = default)
    {
        JsonWebToken jwt;
        try
        {
            jwt = new JsonWebToken(token);
        }
        catch (Exception e) when (e is ArgumentException or SecurityTokenMalformedException)
        {
            return Fail("the token is malformed (not a signed JWT in compact form)");
        }

        var keys = Keys.Keys;
        if (jwt.Kid is { Length: > 0 } kid && !keys.KeyIds.Contains(kid))
        {
            await Keys.RefreshForUnknownKeyAsync(cancellationToken).ConfigureAwait(false);
            keys = Keys.Keys;
            if (!keys.KeyIds.Contains(kid))
            {
                return Fail($"the token is signed with an unknown key (kid {Truncate(kid)})");
            }
        }

        var parameters = new TokenValidationParameters
        {
            ValidIssuer = Config.Issuer,
            ValidateIssuer = true,
            ValidAudiences = Config.Audiences,
            ValidateAudience = Config.Audiences.Count != 0,
            IssuerSigningKeys = keys.Keys,
            ValidateIssuerSigningKey = false,
            ValidateLifetime = true,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ClockSkew = TimeSpan.FromSeconds(30),
        };
        TokenValidationResult result;
        try
        {
            result = await _handler.ValidateTokenAsync(jwt, parameters).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ArgumentException or SecurityTokenException)
        {
            return Fail(Describe(e, jwt));
        }

        if (!result.IsValid)
        {
            return Fail(Describe(result.Exception, jwt));
        }

        return new JwtResult(ToPrincipal(jwt), null, null);
    }

    private static JwtResult Fail(string reason) => new(null, Invalid, reason);

    private string Describe(Exception? e, JsonWebToken jwt) => e switch
    {
        SecurityTokenExpiredException => $"the token expired at {jwt.ValidTo:yyyy-MM-ddTHH:mm:ssZ}",
        SecurityTokenNotYetValidException => $"the token is not valid before {jwt.ValidFrom:yyyy-MM-ddTHH:mm:ssZ}",
        SecurityTokenNoExpirationException => "the token has no expiry (exp)",
        SecurityTokenInvalidIssuerException => $"the token's issuer {Truncate(SafeIssuer(jwt))} is not {Config.Issuer}",
        SecurityTokenInvalidAudienceException => $"the token's audience is not one of {string.Join(", ", Config.Audiences)}",
        SecurityTokenSignatureKeyNotFoundException => "no key of the JWKS verifies the token's signature (unknown key)",
        SecurityTokenInvalidSignatureException => "the token's signature is invalid (bad signature)",
        SecurityTokenMalformedException or ArgumentException => "the token is malformed",
        _ => $"the token is invalid ({e?.GetType().Name ?? "unknown reason"})",
    };

    private static string SafeIssuer(JsonWebToken jwt)
    {
        try
        {
            return jwt.Issuer;
        }
        catch (ArgumentException)
        {
            return "(unreadable)";
        }
    }

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "...";

    private static JwtPrincipal ToPrincipal(JsonWebToken jwt)
    {
        var claims = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (Claim c in jwt.Claims)
        {
            if (!claims.TryGetValue(c.Type, out var list))
            {
                claims[c.Type] = list = [];
            }

            list.Add(c.Value);
        }

        var map = new Dictionary<string, string[]>(claims.Count, StringComparer.Ordinal);
        foreach (var (name, values) in claims)
        {
            map[name] = [.. values];
        }

        return new JwtPrincipal(jwt.Issuer, jwt.Subject ?? "", map, jwt.ValidTo);
    }
}
