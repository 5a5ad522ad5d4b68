using System.CommandLine;
using System.Globalization;
using System.Net;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Cli;

/// <summary>
/// <c>sidecar wait [--admin ADDRESS-or-URL] [--timeout 60s]</c>: blocks until the local sidecar's admin <c>/ready</c>
/// answers 200 (exit 0), so that an app container can start after its proxy (Istio's <c>pilot-agent wait</c>).
/// Polls every <see cref="Period"/>; when the timeout passes, exits 1 saying what the last attempt got. Bad flags exit 64.
/// </summary>
internal static class WaitCommand
{
    /// <summary>Time between two polls.</summary>
    internal static readonly TimeSpan Period = TimeSpan.FromMilliseconds(200);

    /// <summary>Longest one poll may take (connect and answer).</summary>
    internal static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(1);

    public static Command Create()
    {
        var admin = new Option<string>("--admin")
        {
            Description = "The sidecar's admin listener: an address (127.0.0.1:15000) or a URL (http://127.0.0.1:15000/ready); a URL without a path gets /ready.",
            DefaultValueFactory = _ => "127.0.0.1:15000",
            HelpName = "address-or-url",
        };
        var timeout = new Option<string>("--timeout")
        {
            Description = "Give up after this long (e.g. 500ms, 60s, 2m) and exit 1.",
            DefaultValueFactory = _ => "60s",
            HelpName = "duration",
        };
        var command = new Command("wait", "Wait until the local sidecar is ready (its admin /ready answers 200), then exit 0; exit 1 when it is not ready in time. For an app container that must start after its proxy.")
        {
            admin, timeout,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var errors = new List<string>();
            var url = ParseAdmin(parse.GetValue(admin)!, out var adminError);
            if (adminError is not null)
            {
                errors.Add($"--admin: {adminError}");
            }

            if (ValueParsers.ParseDuration(parse.GetValue(timeout)!, allowOff: false, out var limit) is { } timeoutError)
            {
                errors.Add($"--timeout: {timeoutError}");
            }

            if (errors.Count > 0)
            {
                foreach (var error in errors)
                {
                    await stderr.WriteLineAsync($"error: {error}");
                }

                await stderr.WriteLineAsync("Run 'sidecar wait --help' for usage.");
                return ExitCodes.Usage;
            }

            return await WaitAsync(url!, limit, stdout, stderr, cancellationToken);
        });
        return command;
    }

    /// <summary>An address (host:port) or an http(s) URL; the URL of the readiness check, or null with an error.</summary>
    internal static Uri? ParseAdmin(string text, out string? error)
    {
        error = null;
        var isUrl = text.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("https://", StringComparison.OrdinalIgnoreCase);
        if (!Uri.TryCreate(isUrl ? text : "http://" + text, UriKind.Absolute, out var uri) || uri.Host.Length == 0
            || (!isUrl && (uri.AbsolutePath != "/" || uri.IsDefaultPort)))
        {
            error = $"\"{text}\" is not an address with a port (127.0.0.1:15000) or an http URL";
            return null;
        }

        return uri.AbsolutePath == "/" ? new Uri(uri, "/ready") : uri;
    }

    private static async Task<int> WaitAsync(Uri url, TimeSpan limit, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        using var handler = new SocketsHttpHandler { UseProxy = false, ConnectTimeout = AttemptTimeout, PooledConnectionLifetime = TimeSpan.Zero };
        using var client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(limit);
        var attempts = 0;
        var last = "no answer yet";
        while (true)
        {
            attempts++;
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
                attempt.CancelAfter(AttemptTimeout);
                using var response = await client.GetAsync(url, attempt.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    await stdout.WriteLineAsync($"sidecar: ready ({url}, after {attempts} attempt(s))");
                    return ExitCodes.Ok;
                }

                var body = (await response.Content.ReadAsStringAsync(attempt.Token)).Trim();
                last = string.Create(CultureInfo.InvariantCulture, $"{(int)response.StatusCode} {body}");
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
                last = $"no answer within {AttemptTimeout.TotalSeconds:0.#} s";
            }
            catch (HttpRequestException e)
            {
                last = e.InnerException?.Message ?? e.Message;
            }
            catch (OperationCanceledException)
            {
                // The deadline passed during the attempt: reported below.
            }

            if (deadline.IsCancellationRequested)
            {
                break;
            }

            try
            {
                await Task.Delay(Period, deadline.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        var why = cancellationToken.IsCancellationRequested ? "interrupted" : $"not ready within {ValueParsers.FormatDuration(limit)}";
        await stderr.WriteLineAsync($"error: the sidecar at {url} is {why} ({attempts} attempt(s)); last: {last}");
        return ExitCodes.Failure;
    }
}
