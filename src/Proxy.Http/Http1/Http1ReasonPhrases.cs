using System.Text;

namespace Proxy.Http.Http1;

/// <summary>
/// The standard reason phrase of a status code (RFC 9110 §15, via ASP.NET's table) as ASCII bytes, for status lines the
/// proxy writes itself (its own answers, HTTP/2 responses rendered as HTTP/1.1). Cached: one small array per code for
/// the life of the process. Unknown codes get an empty phrase, which RFC 9112 §4 allows.
/// </summary>
public static class Http1ReasonPhrases
{
    private static readonly byte[]?[] Cache = new byte[600][];

    public static byte[] For(int statusCode)
    {
        if ((uint)statusCode >= (uint)Cache.Length)
        {
            return [];
        }

        return Cache[statusCode] ??= Encoding.ASCII.GetBytes(Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(statusCode));
    }
}
