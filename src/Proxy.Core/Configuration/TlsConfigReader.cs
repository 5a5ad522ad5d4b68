using System.Text.Json;
using static Proxy.Core.Configuration.JsonConfigReading;

namespace Proxy.Core.Configuration;

/// <summary>
/// Reads the <c>tls</c> objects of listeners (termination) and services (origination). Every problem names its key;
/// files are checked to exist here, so a typo in a path stops the start with exit code 64 rather than failing the
/// first handshake (their content is checked when the listener starts).
/// </summary>
internal static class TlsConfigReader
{
    /// <summary>The ALPN protocols a listener offers when its config does not say: what its HTTP stage can serve.</summary>
    public static IReadOnlyList<string> DefaultHttpAlpn { get; } = ["h2", "http/1.1"];

    /// <summary>
    /// <c>{ "certificate": "cert.pem", "key": "key.pem", "alpn": ["h2", "http/1.1"], "clientCertificate": "none|optional|required", "ca": "bundle.pem" }</c>
    /// </summary>
    public static ListenerTlsConfig? ReadListener(JsonElement e, string key, ListenerProtocol protocol, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "certificate", "key", "alpn", "clientCertificate", "ca"))
        {
            return null;
        }

        var before = errors.Count;
        var certificate = ReadPath(e, "certificate", key, errors, required: true);
        var privateKey = ReadPath(e, "key", key, errors, required: true);
        var ca = ReadPath(e, "ca", key, errors, required: false);
        var alpn = e.TryGetProperty("alpn", out var alpnElement)
            ? ReadAlpn(alpnElement, $"{key}.alpn", errors)
            : protocol == ListenerProtocol.Http ? DefaultHttpAlpn : [];
        var mode = TlsClientCertificateMode.None;
        if (e.TryGetProperty("clientCertificate", out _))
        {
            switch (ReadString(e, "clientCertificate", key, errors))
            {
                case null:
                    break;
                case "none":
                    break;
                case "optional":
                    mode = TlsClientCertificateMode.Optional;
                    break;
                case "required":
                    mode = TlsClientCertificateMode.Required;
                    break;
                case var other:
                    errors.Add($"{key}.clientCertificate: \"{other}\" is not one of none, optional, required");
                    break;
            }
        }

        if (ca is not null && mode == TlsClientCertificateMode.None && errors.Count == before)
        {
            errors.Add($"{key}.ca: only used to check client certificates; set clientCertificate to optional or required");
        }

        if (errors.Count != before || certificate is null || privateKey is null || alpn is null)
        {
            return null;
        }

        return new ListenerTlsConfig(certificate, privateKey) { Alpn = alpn, ClientCertificate = mode, CaPath = ca };
    }

    /// <summary>
    /// <c>{ "sni": "backend.example", "alpn": ["h2"], "ca": "bundle.pem", "certificate": "client.pem", "key": "client-key.pem", "insecureSkipVerify": false }</c>
    /// (every key optional: <c>{}</c> is TLS with the system trust store and no SNI).
    /// </summary>
    public static UpstreamTlsConfig? ReadUpstream(JsonElement e, string key, List<string> errors)
    {
        if (!CheckKeys(e, key, errors, "sni", "alpn", "ca", "certificate", "key", "insecureSkipVerify"))
        {
            return null;
        }

        var before = errors.Count;
        string? sni = null;
        if (e.TryGetProperty("sni", out _))
        {
            sni = ReadString(e, "sni", key, errors);
            if (sni is not null && (sni.Length > 253 || !System.Text.Ascii.IsValid(sni) || sni.Any(static c => c is ' ' or '/' or ':' or '\t')))
            {
                errors.Add($"{key}.sni: \"{sni}\" is not a host name");
            }
        }

        var alpn = e.TryGetProperty("alpn", out var alpnElement) ? ReadAlpn(alpnElement, $"{key}.alpn", errors) : null;
        var ca = ReadPath(e, "ca", key, errors, required: false);
        var certificate = ReadPath(e, "certificate", key, errors, required: false);
        var privateKey = ReadPath(e, "key", key, errors, required: false);
        if ((certificate is null) != (privateKey is null) && errors.Count == before)
        {
            errors.Add(certificate is null
                ? $"{key}.certificate: missing (a client key needs its certificate)"
                : $"{key}.key: missing (a client certificate needs its key)");
        }

        var insecure = false;
        if (e.TryGetProperty("insecureSkipVerify", out var skip))
        {
            if (skip.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                insecure = skip.GetBoolean();
            }
            else
            {
                errors.Add($"{key}.insecureSkipVerify: must be true or false");
            }
        }

        if (insecure && ca is not null && errors.Count == before)
        {
            errors.Add($"{key}.ca: has no effect with insecureSkipVerify (no certificate is checked)");
        }

        if (errors.Count != before)
        {
            return null;
        }

        return new UpstreamTlsConfig
        {
            Sni = sni,
            Alpn = alpn,
            CaPath = ca,
            CertificatePath = certificate,
            KeyPath = privateKey,
            InsecureSkipVerify = insecure,
        };
    }

    private static string? ReadPath(JsonElement e, string name, string key, List<string> errors, bool required)
    {
        if (!e.TryGetProperty(name, out _))
        {
            if (required)
            {
                errors.Add($"{key}.{name}: missing (a PEM file path)");
            }

            return null;
        }

        var path = ReadString(e, name, key, errors);
        if (path is not null && !File.Exists(path))
        {
            errors.Add($"{key}.{name}: no such file: {path}");
            return null;
        }

        return path;
    }

    private static List<string>? ReadAlpn(JsonElement array, string key, List<string> errors)
    {
        var list = new List<string>();
        var ok = true;
        ReadArray(array, key, errors, (item, itemKey) =>
        {
            var text = ReadStringValue(item, itemKey, errors);
            if (text is null)
            {
                ok = false;
            }
            else if (text.Length > 255 || !System.Text.Ascii.IsValid(text))
            {
                errors.Add($"{itemKey}: \"{text}\" is not an ALPN protocol id (ASCII, at most 255 bytes)");
                ok = false;
            }
            else if (list.Contains(text))
            {
                errors.Add($"{itemKey}: \"{text}\" is listed twice");
                ok = false;
            }
            else
            {
                list.Add(text);
            }
        });
        return ok && array.ValueKind == JsonValueKind.Array ? list : null;
    }
}
