namespace Proxy.Tls.Identity;

/// <summary>
/// Which peer identities are acceptable: any, one exact SPIFFE ID, a trust domain, a Kubernetes namespace, a URI
/// prefix, or any of several. Immutable; <see cref="ToString"/> says what was expected (used in failure reasons).
/// </summary>
public sealed class IdentityPattern
{
    private readonly Func<SpiffeId, bool> _matches;
    private readonly string _text;

    private IdentityPattern(Func<SpiffeId, bool> matches, string text)
    {
        _matches = matches;
        _text = text;
    }

    /// <summary>Any valid SPIFFE ID.</summary>
    public static IdentityPattern Any { get; } = new(static _ => true, "any identity");

    /// <summary>Exactly <paramref name="id"/>.</summary>
    public static IdentityPattern Exact(SpiffeId id)
    {
        ArgumentNullException.ThrowIfNull(id);
        return new(other => other == id, id.Uri);
    }

    /// <summary>Any identity in <paramref name="trustDomain"/>.</summary>
    /// <exception cref="FormatException">Not a valid trust domain name.</exception>
    public static IdentityPattern TrustDomain(string trustDomain)
    {
        if (SpiffeId.ValidateTrustDomain(trustDomain) is { } error)
        {
            throw new FormatException(error);
        }

        return new(other => string.Equals(other.TrustDomain, trustDomain, StringComparison.Ordinal), $"any identity in trust domain {trustDomain}");
    }

    /// <summary>Any Kubernetes workload identity of namespace <paramref name="ns"/> in <paramref name="trustDomain"/>.</summary>
    public static IdentityPattern Namespace(string trustDomain, string ns)
    {
        if (SpiffeId.ValidateTrustDomain(trustDomain) is { } error)
        {
            throw new FormatException(error);
        }

        return new(
            other => other.IsKubernetesWorkload
                     && string.Equals(other.TrustDomain, trustDomain, StringComparison.Ordinal)
                     && string.Equals(other.Namespace, ns, StringComparison.Ordinal),
            $"any identity in namespace {ns} of trust domain {trustDomain}");
    }

    /// <summary>Any identity whose full URI starts with <paramref name="uriPrefix"/> (e.g. <c>spiffe://cluster.local/ns/prod/</c>).</summary>
    public static IdentityPattern Prefix(string uriPrefix)
    {
        if (!uriPrefix.StartsWith(SpiffeId.Prefix, StringComparison.Ordinal))
        {
            throw new FormatException($"\"{uriPrefix}\" does not start with {SpiffeId.Prefix}");
        }

        return new(other => other.Uri.StartsWith(uriPrefix, StringComparison.Ordinal), $"an identity starting with {uriPrefix}");
    }

    /// <summary>Any identity matched by one of <paramref name="patterns"/>.</summary>
    public static IdentityPattern AnyOf(params IdentityPattern[] patterns)
    {
        var copy = patterns.ToArray();
        return new(other => Array.Exists(copy, p => p.Matches(other)), string.Join(" or ", copy.Select(static p => p._text)));
    }

    /// <summary>
    /// Parses the text form used in configuration: <c>*</c> (any), <c>spiffe://td/*</c> (the trust domain),
    /// <c>spiffe://td/ns/prod/*</c> (a Kubernetes namespace), <c>spiffe://td/some/path/*</c> (that path and below),
    /// or a full SPIFFE ID (exact). A '*' is allowed only as the whole last segment.
    /// </summary>
    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IdentityPattern? pattern, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        pattern = null;
        if (text == "*")
        {
            pattern = Any;
            error = null;
            return true;
        }

        if (text is not null && text.EndsWith("/*", StringComparison.Ordinal))
        {
            var baseText = text[..^2];
            if (!SpiffeId.TryParse(baseText, out var baseId, out var baseError))
            {
                error = $"\"{text}\": {baseError}";
                return false;
            }

            pattern = baseId.IsTrustDomainId
                ? TrustDomain(baseId.TrustDomain)
                : baseId.Path.StartsWith("/ns/", StringComparison.Ordinal) && baseId.Path.IndexOf('/', 4) < 0
                    ? Namespace(baseId.TrustDomain, baseId.Path[4..])
                    : Prefix(baseId.Uri + "/");
            error = null;
            return true;
        }

        if (text is not null && text.Contains('*', StringComparison.Ordinal))
        {
            error = $"\"{text}\": '*' may only be the whole pattern or its whole last segment (spiffe://td/ns/prod/*)";
            return false;
        }

        if (!SpiffeId.TryParse(text, out var id, out var idError))
        {
            error = idError;
            return false;
        }

        pattern = Exact(id);
        error = null;
        return true;
    }

    /// <summary>True when <paramref name="id"/> is acceptable.</summary>
    public bool Matches(SpiffeId id) => _matches(id);

    public override string ToString() => _text;
}
