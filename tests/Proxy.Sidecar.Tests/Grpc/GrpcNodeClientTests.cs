using System.Diagnostics;
using System.Text.Json;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// The node gRPC client (@grpc/grpc-js, <c>node/client.js</c>) against the Grpc.AspNetCore service: directly (the
/// baseline, which also proves the script), through the sidecar's explicit listener and through its outbound capture
/// listener to a service's virtual address. Needs <c>node</c> and <c>npm ci</c> run in <c>Grpc/node</c>: the tests
/// (as root) and .ci/run arrange both on a fresh machine; what cannot be arranged fails the test saying why.
/// </summary>
public sealed class GrpcNodeClientTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--)
        {
            await _disposables[i].DisposeAsync();
        }
    }

    /// <summary>The source folder of the node client (found from the test assembly upwards, so no copy is needed).</summary>
    private static string NodeFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "Grpc", "node", "client.js");
            if (File.Exists(candidate) && File.Exists(Path.Combine(dir.FullName, "Proxy.Sidecar.Tests.csproj")))
            {
                return Path.GetDirectoryName(candidate)!;
            }
        }

        throw new InvalidOperationException($"Grpc/node/client.js not found above {AppContext.BaseDirectory}");
    }

    private static async Task<JsonElement> RunClientAsync(Uri address)
    {
        var folder = NodeFolder();
        var prepared = Prepare(folder);
        Assert.True(
            Directory.Exists(Path.Combine(folder, "node_modules", "@grpc", "grpc-js")),
            $"node_modules is missing in {folder} and preparing it failed: {prepared}");

        var start = new ProcessStartInfo("node", ["client.js", $"{address.Host}:{address.Port}"])
        {
            WorkingDirectory = folder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("'node' was not found on PATH (Debian package nodejs; .ci/run installs it)", e);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                await process.WaitForExitAsync().WaitAsync(Timeout);
            }
            catch (TimeoutException)
            {
                process.Kill(entireProcessTree: true);
                throw;
            }

            var output = await stdout;
            Assert.True(process.ExitCode == 0, $"node client.js exited {process.ExitCode}: {await stderr}{output}");
            return JsonDocument.Parse(output).RootElement.Clone();
        }
    }

    private static readonly Lock PrepareLock = new();
    private static string? s_prepared;

    /// <summary>
    /// Once per test run, what a fresh machine lacks (it has only the .NET SDK): as root, node and npm from Debian
    /// (nodejs, npm) when they are not on PATH, then <c>npm ci</c> when node_modules is missing (the versions pinned
    /// by package-lock.json). .ci/run does the same up front. Returns what was done, for failure messages.
    /// </summary>
    private static string Prepare(string folder)
    {
        lock (PrepareLock)
        {
            if (s_prepared is not null)
            {
                return s_prepared;
            }

            var log = new System.Text.StringBuilder();
            var runner = new Proxy.Sidecar.Iptables.ProcessCommandRunner();
            if (runner.Locate("node") is null || runner.Locate("npm") is null)
            {
                Run("apt-get", ["update", "-q"], null, log);
                Run("apt-get", ["install", "-y", "-q", "nodejs", "npm"], null, log);
            }

            if (!Directory.Exists(Path.Combine(folder, "node_modules", "@grpc", "grpc-js")))
            {
                Run("npm", ["ci", "--no-audit", "--no-fund"], folder, log);
            }

            return s_prepared = log.Length == 0 ? "nothing to prepare" : log.ToString();
        }
    }

    private static void Run(string program, string[] args, string? folder, System.Text.StringBuilder log)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = folder ?? "" };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        try
        {
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                process.Kill(entireProcessTree: true);
                log.Append($"{program} {args[0]} did not finish within 5 minutes; ");
                return;
            }

            log.Append($"{program} {string.Join(' ', args)} exited {process.ExitCode}: {stderr.Result.Trim()}; ");
            _ = stdout.Result;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            log.Append($"{program} could not be started ({e.Message}); ");
        }
    }

    private static int Int(JsonElement results, string @case, string property)
    {
        var c = results.GetProperty(@case);
        Assert.True(c.TryGetProperty(property, out var value), $"{@case}: no '{property}' in {c}");
        return value.GetInt32();
    }

    private static string? Text(JsonElement results, string @case, string property)
    {
        var c = results.GetProperty(@case);
        Assert.True(c.TryGetProperty(property, out var value), $"{@case}: no '{property}' in {c}");
        return value.GetString();
    }

    private static bool Flag(JsonElement results, string @case, string property)
    {
        var c = results.GetProperty(@case);
        Assert.True(c.TryGetProperty(property, out var value), $"{@case}: no '{property}' in {c}");
        return value.GetBoolean();
    }

    [Theory]
    [InlineData(GrpcPath.Direct)]
    [InlineData(GrpcPath.Explicit)]
    [InlineData(GrpcPath.Captured)]
    public async Task NodeClient_AllCallKinds_Answered(GrpcPath path)
    {
        var server = await GrpcTestServer.StartAsync();
        _disposables.Add(server);
        var setup = await GrpcPathSetup.StartAsync(path, server.EndPoint);
        _disposables.Add(setup);

        var results = await RunClientAsync(setup.Address);

        Assert.Equal("hello", Text(results, "unary", "payload"));
        Assert.Equal("grüße ✓", Text(results, "unary", "text"));
        Assert.Equal("acme", Text(results, "unary", "tenant"));
        Assert.Equal("early", Text(results, "unary", "header"));
        Assert.Equal("late", Text(results, "unary", "trailer"));
        Assert.Equal(0, Int(results, "unary", "code"));

        Assert.Equal(100, Int(results, "serverStream", "count"));
        Assert.True(Flag(results, "serverStream", "inOrder"));

        Assert.Equal(50, Int(results, "clientStream", "received"));
        Assert.True(Flag(results, "clientStream", "payloadMatches"));

        Assert.Equal(20, Int(results, "bidi", "rounds"));
        Assert.True(Flag(results, "bidi", "inOrder"));

        Assert.Equal(3 * 1024 * 1024, Int(results, "large", "size"));
        Assert.True(Flag(results, "large", "equal"));

        Assert.Equal(5, Int(results, "serverError", "code")); // NOT_FOUND
        Assert.True(Flag(results, "serverError", "detailsMatch"), results.GetProperty("serverError").ToString());

        Assert.Equal(4, Int(results, "deadlineExceeded", "code")); // DEADLINE_EXCEEDED
    }

    [Fact]
    public async Task NodeClient_Explicit_NoEndpointListening_EveryCallUnavailableFromTheProxy()
    {
        var dead = GrpcPathSetup.DeadEndPoint();
        var config = GrpcPathSetup.BaseConfig() with
        {
            Services = [GrpcPathSetup.Service(UpstreamProtocol.Http2, dead)],
            Listeners = [GrpcPathSetup.Edge(GrpcPathSetup.ServiceName)],
        };
        var setup = await GrpcPathSetup.StartSidecarAsync(config, GrpcPathSetup.VirtualAddress, GrpcPathSetup.ListenerName);
        _disposables.Add(setup);

        var results = await RunClientAsync(setup.Address);

        foreach (var @case in new[] { "unary", "serverStream", "clientStream", "bidi", "large", "serverError" })
        {
            Assert.Equal(14, Int(results, @case, "code")); // UNAVAILABLE
            Assert.Contains(dead.ToString(), Text(results, @case, "details"), StringComparison.Ordinal);
        }
    }
}
