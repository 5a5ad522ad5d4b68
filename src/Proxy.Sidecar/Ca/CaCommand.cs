using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using Proxy.Sidecar.Cli;
using Proxy.Tls.Ca;
using Proxy.Tls.Certificates;
using Proxy.Tls.Identity;

namespace Proxy.Sidecar.Ca;

/// <summary>
/// <c>sidecar ca init</c> creates the mesh root CA (<c>ca.crt</c>, <c>ca.key</c>); <c>sidecar ca issue</c> issues a
/// short-lived workload certificate for a SPIFFE ID signed by it (<c>tls.crt</c> = leaf + CA chain, <c>tls.key</c>).
/// Files are PEM; keys are written with mode 0600, atomically (temporary file + rename), and existing files are only
/// replaced with <c>--force</c>. Bad flags exit 64 (all reported at once), file problems exit 1.
/// </summary>
internal static class CaCommand
{
    public const string CaCertificateFile = "ca.crt";
    public const string CaKeyFile = "ca.key";
    public const string WorkloadCertificateFile = "tls.crt";
    public const string WorkloadKeyFile = "tls.key";

    public static Command Create(TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var command = new Command("ca", "The mesh certificate authority: create a root CA, issue workload certificates (SPIFFE IDs in the URI SAN).");
        command.Subcommands.Add(CreateInit(time));
        command.Subcommands.Add(CreateIssue(time));
        return command;
    }

    private static Command CreateInit(TimeProvider time)
    {
        var outDir = new Option<string?>("--out") { Description = $"Directory to write {CaCertificateFile} and {CaKeyFile} to (created if missing). Required.", HelpName = "dir" };
        var trustDomain = new Option<string>("--trust-domain") { Description = "Trust domain the CA signs identities for.", DefaultValueFactory = _ => "cluster.local", HelpName = "name" };
        var ttl = new Option<string>("--ttl") { Description = "Lifetime of the root certificate (s, m, h or d units).", DefaultValueFactory = _ => "3650d", HelpName = "duration" };
        var force = new Option<bool>("--force") { Description = "Replace existing files." };
        var command = new Command("init", "Create a mesh root CA: ECDSA P-256, CN \"<trust-domain> mesh root\", URI SAN spiffe://<trust-domain>.")
        {
            outDir, trustDomain, ttl, force,
        };

        command.SetAction(async (parse, cancellationToken) =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var errors = new List<string>();
            var dir = parse.GetValue(outDir);
            if (string.IsNullOrEmpty(dir))
            {
                errors.Add("--out: required (the directory to write the CA to)");
            }

            var domain = parse.GetValue(trustDomain)!;
            if (SpiffeId.ValidateTrustDomain(domain) is { } domainError)
            {
                errors.Add($"--trust-domain: {domainError}");
            }

            if (ParseTtl(parse.GetValue(ttl)!, out var lifetime) is { } ttlError)
            {
                errors.Add($"--ttl: {ttlError}");
            }

            if (errors.Count > 0)
            {
                return await UsageAsync(stderr, "init", errors);
            }

            var certPath = Path.Combine(dir!, CaCertificateFile);
            var keyPath = Path.Combine(dir!, CaKeyFile);
            using var ca = MeshCertificateAuthority.CreateRoot(domain, lifetime, time);
            var failure = await WriteAsync(certPath, ca.CertificateChainPem(), keyPath, MeshCertificateAuthority.PrivateKeyPem(ca.Certificate), parse.GetValue(force), cancellationToken);
            if (failure is not null)
            {
                await stderr.WriteLineAsync($"sidecar ca init: {failure}");
                return ExitCodes.Failure;
            }

            await stdout.WriteLineAsync($"wrote {certPath}: mesh root for trust domain {domain}, valid until {ca.Certificate.NotAfter.ToUniversalTime():yyyy-MM-ddTHH:mm:ssZ}, SHA-256 {ca.Certificate.GetCertHashString(HashAlgorithmName.SHA256)}");
            await stdout.WriteLineAsync($"wrote {keyPath} (mode 0600): keep it secret; only 'sidecar ca issue' needs it");
            return ExitCodes.Ok;
        });

        return command;
    }

    private static Command CreateIssue(TimeProvider time)
    {
        var caDir = new Option<string?>("--ca-dir") { Description = $"Directory holding the CA's {CaCertificateFile} and {CaKeyFile} (or give --ca-cert and --ca-key).", HelpName = "dir" };
        var caCert = new Option<string?>("--ca-cert") { Description = "The CA certificate (PEM; an intermediate CA may be followed by its chain).", HelpName = "file" };
        var caKey = new Option<string?>("--ca-key") { Description = "The CA private key (PEM, unencrypted).", HelpName = "file" };
        var identity = new Option<string?>("--identity") { Description = "The workload's SPIFFE ID, e.g. spiffe://cluster.local/ns/default/sa/web; its trust domain must be the CA's. Required.", HelpName = "spiffe-id" };
        var dns = new Option<string[]>("--dns") { Description = "A DNS name to add to the certificate (repeatable).", HelpName = "name", AllowMultipleArgumentsPerToken = false, DefaultValueFactory = _ => [] };
        var ttl = new Option<string>("--ttl") { Description = "Lifetime of the certificate (s, m, h or d units); cut short at the CA's own expiry.", DefaultValueFactory = _ => "24h", HelpName = "duration" };
        var outDir = new Option<string?>("--out") { Description = $"Directory to write {WorkloadCertificateFile} and {WorkloadKeyFile} to (or give --cert and --key).", HelpName = "dir" };
        var certFile = new Option<string?>("--cert") { Description = "Where to write the certificate chain (leaf, then the CA chain).", HelpName = "file" };
        var keyFile = new Option<string?>("--key") { Description = "Where to write the private key (mode 0600).", HelpName = "file" };
        var force = new Option<bool>("--force") { Description = "Replace existing files (e.g. when rotating)." };
        var command = new Command("issue", "Issue a workload certificate: ECDSA P-256, URI SAN = the SPIFFE ID, EKU serverAuth+clientAuth, signed by the mesh CA.")
        {
            caDir, caCert, caKey, identity, dns, ttl, outDir, certFile, keyFile, force,
        };

        command.SetAction(async (parse, cancellationToken) =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var errors = new List<string>();

            var (caCertPath, caKeyPath) = PathPair(parse.GetValue(caDir), CaCertificateFile, CaKeyFile, parse.GetValue(caCert), parse.GetValue(caKey), "--ca-dir", "--ca-cert", "--ca-key", errors);
            var (certPath, keyPath) = PathPair(parse.GetValue(outDir), WorkloadCertificateFile, WorkloadKeyFile, parse.GetValue(certFile), parse.GetValue(keyFile), "--out", "--cert", "--key", errors);

            SpiffeId? id = null;
            var idText = parse.GetValue(identity);
            if (string.IsNullOrEmpty(idText))
            {
                errors.Add("--identity: required (e.g. spiffe://cluster.local/ns/default/sa/web)");
            }
            else if (!SpiffeId.TryParse(idText, out id, out var idError))
            {
                errors.Add($"--identity: {idError}");
            }
            else if (id.IsTrustDomainId)
            {
                errors.Add($"--identity: {id} names a trust domain, not a workload (add a path such as /ns/<namespace>/sa/<service-account>)");
            }

            var dnsNames = parse.GetValue(dns) ?? [];
            foreach (var name in dnsNames)
            {
                if (Uri.CheckHostName(name.StartsWith("*.", StringComparison.Ordinal) ? name[2..] : name) != UriHostNameType.Dns)
                {
                    errors.Add($"--dns: \"{name}\" is not a DNS name");
                }
            }

            if (ParseTtl(parse.GetValue(ttl)!, out var lifetime) is { } ttlError)
            {
                errors.Add($"--ttl: {ttlError}");
            }

            if (errors.Count > 0)
            {
                return await UsageAsync(stderr, "issue", errors);
            }

            MeshCertificateAuthority ca;
            try
            {
                ca = MeshCertificateAuthority.Load(caCertPath!, caKeyPath!);
            }
            catch (CertificateLoadException e)
            {
                await stderr.WriteLineAsync($"sidecar ca issue: {e.Message}");
                return ExitCodes.Failure;
            }

            using (ca)
            {
                if (!string.Equals(ca.TrustDomain, id!.TrustDomain, StringComparison.Ordinal))
                {
                    return await UsageAsync(stderr, "issue", [$"--identity: {id} is in trust domain {id.TrustDomain}, but the CA {caCertPath} signs for {ca.TrustDomain}"]);
                }

                System.Security.Cryptography.X509Certificates.X509Certificate2 leaf;
                try
                {
                    leaf = ca.Issue(id, dnsNames, lifetime, time);
                }
                catch (ArgumentException e)
                {
                    await stderr.WriteLineAsync($"sidecar ca issue: {e.Message}");
                    return ExitCodes.Failure;
                }

                using (leaf)
                {
                    var failure = await WriteAsync(certPath!, ca.WorkloadChainPem(leaf), keyPath!, MeshCertificateAuthority.PrivateKeyPem(leaf), parse.GetValue(force), cancellationToken);
                    if (failure is not null)
                    {
                        await stderr.WriteLineAsync($"sidecar ca issue: {failure}");
                        return ExitCodes.Failure;
                    }

                    var notAfter = leaf.NotAfter.ToUniversalTime();
                    var shortened = notAfter < time.GetUtcNow().UtcDateTime + lifetime - TimeSpan.FromSeconds(1) ? " (cut short at the CA's expiry)" : "";
                    await stdout.WriteLineAsync($"wrote {certPath}: {id}, valid until {notAfter:yyyy-MM-ddTHH:mm:ssZ}{shortened}, serial {leaf.SerialNumber}");
                    await stdout.WriteLineAsync($"wrote {keyPath} (mode 0600)");
                    return ExitCodes.Ok;
                }
            }
        });

        return command;
    }

    /// <summary>Either a directory (with the two default file names) or both explicit files, not a mix.</summary>
    private static (string? Cert, string? Key) PathPair(
        string? dir, string certName, string keyName, string? cert, string? key, string dirFlag, string certFlag, string keyFlag, List<string> errors)
    {
        var hasDir = !string.IsNullOrEmpty(dir);
        var hasCert = !string.IsNullOrEmpty(cert);
        var hasKey = !string.IsNullOrEmpty(key);
        if (hasDir && (hasCert || hasKey))
        {
            errors.Add($"{dirFlag}: give either {dirFlag} or {certFlag} and {keyFlag}, not both");
            return (null, null);
        }

        if (hasDir)
        {
            return (Path.Combine(dir!, certName), Path.Combine(dir!, keyName));
        }

        if (hasCert && hasKey)
        {
            return (cert, key);
        }

        errors.Add(hasCert || hasKey
            ? $"{(hasCert ? keyFlag : certFlag)}: required with {(hasCert ? certFlag : keyFlag)}"
            : $"{dirFlag}: required (or {certFlag} and {keyFlag})");
        return (null, null);
    }

    private static async Task<int> UsageAsync(TextWriter stderr, string subcommand, IReadOnlyList<string> errors)
    {
        foreach (var error in errors)
        {
            await stderr.WriteLineAsync($"sidecar ca {subcommand}: {error}");
        }

        await stderr.WriteLineAsync($"See 'sidecar ca {subcommand} --help'.");
        return ExitCodes.Usage;
    }

    /// <summary>"3650d", "24h", "90m", "30s", "1.5h": a positive duration up to 100 years.</summary>
    internal static string? ParseTtl(string text, out TimeSpan value)
    {
        value = default;
        var span = text.AsSpan().Trim();
        if (span.Length >= 2)
        {
            var scale = span[^1] switch
            {
                's' => TimeSpan.FromSeconds(1),
                'm' => TimeSpan.FromMinutes(1),
                'h' => TimeSpan.FromHours(1),
                'd' => TimeSpan.FromDays(1),
                _ => TimeSpan.Zero,
            };
            if (scale > TimeSpan.Zero
                && double.TryParse(span[..^1], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number)
                && number > 0 && number * scale.TotalDays <= 36_525)
            {
                value = scale * number;
                if (value >= TimeSpan.FromSeconds(1))
                {
                    return null;
                }
            }
        }

        return $"\"{text}\" is not a duration from 1s to 36525d (e.g. 30s, 90m, 24h, 3650d)";
    }

    /// <summary>
    /// Writes the certificate (mode 0644) and key (mode 0600) files, each to a temporary file in the same directory then
    /// renamed over the target, so a reader (a sidecar watching them) never sees a partial file. Existing files are
    /// refused without <paramref name="force"/> (checked for both before either is written). Returns an error or null.
    /// </summary>
    private static async Task<string?> WriteAsync(string certPath, string certPem, string keyPath, string keyPem, bool force, CancellationToken cancellationToken)
    {
        if (!force)
        {
            foreach (var path in new[] { certPath, keyPath })
            {
                if (File.Exists(path))
                {
                    return $"{path} exists; use --force to replace it";
                }
            }
        }

        try
        {
            foreach (var dir in new[] { Path.GetDirectoryName(Path.GetFullPath(certPath)), Path.GetDirectoryName(Path.GetFullPath(keyPath)) })
            {
                if (dir is not null)
                {
                    Directory.CreateDirectory(dir);
                }
            }

            // The key first: a watcher that sees the new certificate then finds its key in place.
            await WriteAtomicallyAsync(keyPath, keyPem, secret: true, force, cancellationToken);
            await WriteAtomicallyAsync(certPath, certPem, secret: false, force, cancellationToken);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"cannot write: {e.Message}";
        }
    }

    private static async Task WriteAtomicallyAsync(string path, string content, bool secret, bool force, CancellationToken cancellationToken)
    {
        var temp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = secret
                ? UnixFileMode.UserRead | UnixFileMode.UserWrite
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        }

        File.Delete(temp); // a leftover of an interrupted run
        try
        {
            await using (var stream = new FileStream(temp, options))
            {
                await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(content), cancellationToken);
                await stream.FlushAsync(cancellationToken);
            }

            File.Move(temp, path, overwrite: force);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
