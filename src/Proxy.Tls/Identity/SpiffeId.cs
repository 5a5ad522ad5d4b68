using System.Diagnostics.CodeAnalysis;

namespace Proxy.Tls.Identity;

/// <summary>
/// A workload identity: a SPIFFE ID, <c>spiffe://&lt;trust-domain&gt;&lt;path&gt;</c>, as carried in the URI SAN of a
/// workload certificate (X.509 SVID). Kubernetes workloads use the path <c>/ns/&lt;namespace&gt;/sa/&lt;service-account&gt;</c>
/// (<see cref="Namespace"/> and <see cref="ServiceAccount"/> are set for those); any other valid path is accepted too.
/// </summary>
/// <remarks>
/// Validation follows the SPIFFE ID specification:
/// <list type="bullet">
/// <item>the scheme is exactly <c>spiffe://</c> (lower case);</item>
/// <item>the trust domain is 1-255 characters of <c>a-z 0-9 . - _</c> (so no upper case, port, user info or percent-encoding);</item>
/// <item>the path is empty or a sequence of <c>/segment</c>, each segment non-empty, not <c>.</c> or <c>..</c>, of <c>a-z A-Z 0-9 . - _</c>
/// (so no trailing slash, query or fragment);</item>
/// <item>the whole ID is at most 2048 bytes.</item>
/// </list>
/// Equality is ordinal on the full text (a valid ID has one spelling).
/// </remarks>
public sealed class SpiffeId : IEquatable<SpiffeId>
{
    /// <summary>The scheme and authority separator every SPIFFE ID starts with.</summary>
    public const string Prefix = "spiffe://";

    /// <summary>Longest SPIFFE ID (bytes; all valid characters are ASCII, so also characters).</summary>
    public const int MaxLength = 2048;

    /// <summary>Longest trust domain name.</summary>
    public const int MaxTrustDomainLength = 255;

    private SpiffeId(string uri, string trustDomain, string path, string? ns, string? serviceAccount)
    {
        Uri = uri;
        TrustDomain = trustDomain;
        Path = path;
        Namespace = ns;
        ServiceAccount = serviceAccount;
    }

    /// <summary>The full ID, e.g. <c>spiffe://cluster.local/ns/default/sa/web</c>.</summary>
    public string Uri { get; }

    /// <summary>The trust domain, e.g. <c>cluster.local</c>.</summary>
    public string TrustDomain { get; }

    /// <summary>The path: empty (the trust domain's own ID) or starting with '/'.</summary>
    public string Path { get; }

    /// <summary>The Kubernetes namespace when the path is <c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>, else null.</summary>
    public string? Namespace { get; }

    /// <summary>The Kubernetes service account when the path is <c>/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c>, else null.</summary>
    public string? ServiceAccount { get; }

    /// <summary>True when the path has the Kubernetes form (<see cref="Namespace"/> and <see cref="ServiceAccount"/> are set).</summary>
    [MemberNotNullWhen(true, nameof(Namespace), nameof(ServiceAccount))]
    public bool IsKubernetesWorkload => Namespace is not null;

    /// <summary>True for the ID of the trust domain itself (no path), e.g. a CA's <c>spiffe://cluster.local</c>.</summary>
    public bool IsTrustDomainId => Path.Length == 0;

    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="error"/> says what is wrong.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? error)
    {
        id = null;
        error = Validate(text, out var trustDomainEnd);
        if (error is not null)
        {
            return false;
        }

        var trustDomain = text![Prefix.Length..trustDomainEnd];
        var path = text[trustDomainEnd..];
        ParseKubernetesPath(path, out var ns, out var sa);
        id = new SpiffeId(text, trustDomain, path, ns, sa);
        return true;
    }

    /// <summary>Parses <paramref name="text"/>.</summary>
    /// <exception cref="FormatException">Not a valid SPIFFE ID; the message says why.</exception>
    public static SpiffeId Parse(string text)
        => TryParse(text, out var id, out var error) ? id : throw new FormatException(error);

    /// <summary>The Kubernetes workload ID <c>spiffe://&lt;trustDomain&gt;/ns/&lt;ns&gt;/sa/&lt;serviceAccount&gt;</c>.</summary>
    /// <exception cref="FormatException">A part is not valid.</exception>
    public static SpiffeId ForKubernetesWorkload(string trustDomain, string ns, string serviceAccount)
        => Parse($"{Prefix}{trustDomain}/ns/{ns}/sa/{serviceAccount}");

    /// <summary>The ID of the trust domain itself, <c>spiffe://&lt;trustDomain&gt;</c>.</summary>
    /// <exception cref="FormatException">Not a valid trust domain name.</exception>
    public static SpiffeId ForTrustDomain(string trustDomain)
        => ValidateTrustDomain(trustDomain) is { } error ? throw new FormatException(error) : Parse(Prefix + trustDomain);

    /// <summary>Null when <paramref name="trustDomain"/> is a valid trust domain name, else what is wrong.</summary>
    public static string? ValidateTrustDomain(string? trustDomain)
    {
        if (string.IsNullOrEmpty(trustDomain))
        {
            return "the trust domain is empty";
        }

        if (trustDomain.Length > MaxTrustDomainLength)
        {
            return $"the trust domain is longer than {MaxTrustDomainLength} characters";
        }

        foreach (var c in trustDomain)
        {
            if (!IsTrustDomainChar(c))
            {
                return $"the trust domain \"{trustDomain}\" has the character '{c}' (allowed: a-z 0-9 . - _)";
            }
        }

        return null;
    }

    private static string? Validate(string? text, out int trustDomainEnd)
    {
        trustDomainEnd = 0;
        if (string.IsNullOrEmpty(text))
        {
            return "the SPIFFE ID is empty";
        }

        if (text.Length > MaxLength)
        {
            return $"the SPIFFE ID is longer than {MaxLength} characters";
        }

        if (!text.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return $"\"{text}\" does not start with {Prefix}";
        }

        var i = Prefix.Length;
        while (i < text.Length && text[i] != '/')
        {
            var c = text[i];
            if (!IsTrustDomainChar(c))
            {
                return c switch
                {
                    ':' => $"\"{text}\": a SPIFFE ID has no port",
                    '@' => $"\"{text}\": a SPIFFE ID has no user info",
                    '?' => $"\"{text}\": a SPIFFE ID has no query",
                    '#' => $"\"{text}\": a SPIFFE ID has no fragment",
                    '%' => $"\"{text}\": a SPIFFE ID has no percent-encoding",
                    _ when char.IsAsciiLetterUpper(c) => $"\"{text}\": the trust domain must be lower case",
                    _ => $"\"{text}\": the trust domain has the character '{c}' (allowed: a-z 0-9 . - _)",
                };
            }

            i++;
        }

        trustDomainEnd = i;
        var trustDomainLength = i - Prefix.Length;
        if (trustDomainLength == 0)
        {
            return $"\"{text}\" has no trust domain";
        }

        if (trustDomainLength > MaxTrustDomainLength)
        {
            return $"\"{text}\": the trust domain is longer than {MaxTrustDomainLength} characters";
        }

        // The path: zero or more "/segment".
        while (i < text.Length)
        {
            var start = ++i; // skip '/'
            while (i < text.Length && text[i] != '/')
            {
                var c = text[i];
                if (!IsPathChar(c))
                {
                    return c switch
                    {
                        '?' => $"\"{text}\": a SPIFFE ID has no query",
                        '#' => $"\"{text}\": a SPIFFE ID has no fragment",
                        '%' => $"\"{text}\": a SPIFFE ID has no percent-encoding",
                        _ => $"\"{text}\": the path has the character '{c}' (allowed: a-z A-Z 0-9 . - _)",
                    };
                }

                i++;
            }

            var segment = text.AsSpan(start, i - start);
            if (segment.Length == 0)
            {
                return i == text.Length
                    ? $"\"{text}\": the path ends with '/'"
                    : $"\"{text}\": the path has an empty segment";
            }

            if (segment is "." or "..")
            {
                return $"\"{text}\": the path has a '{segment}' segment";
            }
        }

        return null;
    }

    private static void ParseKubernetesPath(string path, out string? ns, out string? serviceAccount)
    {
        ns = null;
        serviceAccount = null;

        // "/ns/<ns>/sa/<sa>": exactly four segments (segments are known non-empty here).
        var span = path.AsSpan();
        if (!span.StartsWith("/ns/"))
        {
            return;
        }

        var rest = span[4..];
        var slash = rest.IndexOf('/');
        if (slash < 0)
        {
            return;
        }

        var nsPart = rest[..slash];
        rest = rest[slash..];
        if (!rest.StartsWith("/sa/"))
        {
            return;
        }

        var saPart = rest[4..];
        if (saPart.Contains('/'))
        {
            return;
        }

        ns = nsPart.ToString();
        serviceAccount = saPart.ToString();
    }

    private static bool IsTrustDomainChar(char c)
        => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '-' or '_';

    private static bool IsPathChar(char c)
        => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_';

    public bool Equals(SpiffeId? other) => other is not null && string.Equals(Uri, other.Uri, StringComparison.Ordinal);

    public override bool Equals(object? obj) => obj is SpiffeId other && Equals(other);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Uri);

    public static bool operator ==(SpiffeId? left, SpiffeId? right) => left is null ? right is null : left.Equals(right);

    public static bool operator !=(SpiffeId? left, SpiffeId? right) => !(left == right);

    public override string ToString() => Uri;
}
