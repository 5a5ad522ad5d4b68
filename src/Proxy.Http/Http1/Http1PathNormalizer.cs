using Proxy.Core.Configuration;

namespace Proxy.Http.Http1;

/// <summary>What <see cref="Http1PathNormalizer.Normalize"/> found.</summary>
public enum PathNormalizeResult
{
    /// <summary>The target is already normal: use it as it is (nothing written).</summary>
    Unchanged,

    /// <summary>The normal form was written to the destination.</summary>
    Changed,

    /// <summary>The path holds an encoded NUL (<c>%00</c>): the request must be refused (400), as Istio does.</summary>
    Rejected,
}

/// <summary>
/// Normalizes the path of a request target before it is routed, authorized and forwarded, as Istio's
/// <c>pathNormalization</c> (Envoy's <c>normalize_path</c>, <c>merge_slashes</c> and
/// <c>path_with_escaped_slashes_action</c>), so that a policy or route on <c>/admin</c> also sees
/// <c>/public/../admin</c>, <c>/%61dmin</c> or <c>\admin</c>:
/// <list type="number">
/// <item>percent-encoded unreserved characters (RFC 3986 §2.3: ALPHA, DIGIT, <c>-</c>, <c>.</c>, <c>_</c>, <c>~</c>) are
/// decoded, once (<c>%252e</c> stays <c>%252e</c>); with <see cref="PathNormalization.DecodeAndMergeSlashes"/> also
/// <c>%2F</c> and <c>%5C</c>; any other escape is kept as sent; <c>%00</c> is refused; a stray <c>%</c> (not followed
/// by two hex digits) becomes <c>%25</c>, so that no decoding forms a new escape;</item>
/// <item>a backslash becomes a slash;</item>
/// <item>dot segments are removed (RFC 3986 §5.2.4: <c>/a/./b/../c</c> is <c>/a/c</c>; <c>..</c> never climbs above the root);</item>
/// <item>with <see cref="PathNormalization.MergeSlashes"/> or stricter, runs of slashes become one (<c>/a//b</c> is <c>/a/b</c>).</item>
/// </list>
/// Only the path is touched: the query (from the first <c>?</c>) is kept byte for byte, and so are an absolute-form
/// target's scheme and authority; authority-form (CONNECT) and asterisk-form targets are never changed.
/// Allocates nothing; a path without <c>.</c>, <c>%</c>, <c>\</c> (or <c>//</c> when merging) is recognised as
/// normal by one vectorized scan.
/// </summary>
public static class Http1PathNormalizer
{
    /// <summary>The most bytes <see cref="Normalize"/> writes for <paramref name="target"/> (a stray '%' becomes three).</summary>
    public static int MaxLength(ReadOnlySpan<byte> target) => target.Length * 3;

    /// <summary>
    /// True when <see cref="Normalize"/> would certainly answer <see cref="PathNormalizeResult.Unchanged"/>: the one
    /// scan, without a destination (so a caller allocates a buffer only for a path that may need one).
    /// </summary>
    public static bool IsSurelyNormal(ReadOnlySpan<byte> target, Http1TargetForm form, PathNormalization mode) =>
        !TryGetPath(target, form, mode, out _, out var path) || IsPlain(path, mode);

    /// <summary>
    /// Normalizes <paramref name="target"/> (of <paramref name="form"/>) into <paramref name="destination"/>
    /// (at least <see cref="MaxLength"/> bytes); <paramref name="written"/> is its length when the result is
    /// <see cref="PathNormalizeResult.Changed"/>.
    /// </summary>
    public static PathNormalizeResult Normalize(ReadOnlySpan<byte> target, Http1TargetForm form, PathNormalization mode, Span<byte> destination, out int written)
    {
        written = 0;
        if (!TryGetPath(target, form, mode, out var pathStart, out var path) || IsPlain(path, mode))
        {
            return PathNormalizeResult.Unchanged;
        }

        var rest = target[pathStart..];
        var merge = mode is PathNormalization.MergeSlashes or PathNormalization.DecodeAndMergeSlashes;

        // 1 and 2: decode and turn backslashes into slashes, into the destination after the kept prefix.
        target[..pathStart].CopyTo(destination);
        var decoded = destination[pathStart..];
        var n = 0;
        var decodeSlashes = mode == PathNormalization.DecodeAndMergeSlashes;
        for (var i = 0; i < path.Length; i++)
        {
            var b = path[i];
            if (b == (byte)'%' && !(i + 2 < path.Length && IsHex(path[i + 1]) && IsHex(path[i + 2])))
            {
                // A stray '%' (no two hex digits after it) is written as "%25": left as it is, it could form a new
                // escape with what is decoded after it ("%2%65" would become "%2e", which the app decodes once more
                // into a dot segment the policies never saw).
                "%25"u8.CopyTo(decoded[n..]);
                n += 3;
                continue;
            }

            if (b == (byte)'%' && TryHex(path[i + 1], path[i + 2], out var value))
            {
                if (value == 0)
                {
                    return PathNormalizeResult.Rejected;
                }

                if (IsUnreserved(value) || (decodeSlashes && value is (byte)'/' or (byte)'\\'))
                {
                    b = value;
                    i += 2;
                }
            }

            decoded[n++] = b == (byte)'\\' ? (byte)'/' : b;
        }

        // 3 and 4: dot segments and slash runs, in place (the output never outgrows the input read so far).
        var length = RemoveDotSegments(decoded[..n], merge);
        var total = pathStart + length;
        var query = rest[path.Length..];
        query.CopyTo(destination[total..]);
        total += query.Length;
        if (total == target.Length && destination[..total].SequenceEqual(target))
        {
            return PathNormalizeResult.Unchanged;
        }

        written = total;
        return PathNormalizeResult.Changed;
    }

    /// <summary>The path part of the target (before any query) and where it starts; false when there is none to normalize.</summary>
    private static bool TryGetPath(ReadOnlySpan<byte> target, Http1TargetForm form, PathNormalization mode, out int pathStart, out ReadOnlySpan<byte> path)
    {
        pathStart = 0;
        path = default;
        if (mode == PathNormalization.None || form is Http1TargetForm.Authority or Http1TargetForm.Asterisk)
        {
            return false;
        }

        if (form == Http1TargetForm.Absolute)
        {
            Http1Syntax.SplitAbsoluteForm(target, out _, out pathStart);
            if (pathStart == target.Length)
            {
                return false;
            }
        }

        var rest = target[pathStart..];
        var q = rest.IndexOf((byte)'?');
        path = q < 0 ? rest : rest[..q];
        return true;
    }

    /// <summary>A path with nothing any step could change: no '.', '%' or backslash (and no "//" when merging).</summary>
    private static bool IsPlain(ReadOnlySpan<byte> path, PathNormalization mode) =>
        path.IndexOfAny((byte)'.', (byte)'%', (byte)'\\') < 0
        && (mode is not (PathNormalization.MergeSlashes or PathNormalization.DecodeAndMergeSlashes) || path.IndexOf("//"u8) < 0);

    /// <summary>
    /// RFC 3986 §5.2.4 over an absolute path (in place: the output never outruns the input read so far); with
    /// <paramref name="merge"/> empty segments go too, but a trailing slash stays. Returns the new length.
    /// </summary>
    private static int RemoveDotSegments(Span<byte> path, bool merge)
    {
        if (path.IsEmpty || path[0] != (byte)'/')
        {
            return path.Length;
        }

        var o = 0;
        var i = 0;
        while (i < path.Length)
        {
            // path[i] is a slash; the segment runs to the next one.
            var start = i + 1;
            var next = path[start..].IndexOf((byte)'/');
            var end = next < 0 ? path.Length : start + next;
            var segment = path[start..end];
            var last = end == path.Length;
            if (segment.SequenceEqual("."u8))
            {
                if (last)
                {
                    path[o++] = (byte)'/';
                }
            }
            else if (segment.SequenceEqual(".."u8))
            {
                // Drop the last output segment with its slash; never above the root.
                o = o > 0 ? path[..o].LastIndexOf((byte)'/') : 0;
                if (last)
                {
                    path[o++] = (byte)'/';
                }
            }
            else if (!(merge && segment.IsEmpty && !last))
            {
                path[o++] = (byte)'/';
                segment.CopyTo(path[o..]);
                o += segment.Length;
            }

            i = end;
        }

        if (o == 0)
        {
            path[o++] = (byte)'/';
        }

        return o;
    }

    private static bool IsUnreserved(byte b) =>
        (b >= (byte)'a' && b <= (byte)'z') || (b >= (byte)'A' && b <= (byte)'Z') || (b >= (byte)'0' && b <= (byte)'9') || b is (byte)'-' or (byte)'.' or (byte)'_' or (byte)'~';

    private static bool TryHex(byte high, byte low, out byte value)
    {
        var h = HexValue(high);
        var l = HexValue(low);
        value = (byte)((h << 4) | l);
        return h >= 0 && l >= 0;
    }

    private static bool IsHex(byte b) => HexValue(b) >= 0;

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };
}
