using System.Diagnostics;
using System.Text.Json;
using Proxy.Core.Configuration;

namespace Proxy.Sidecar.Tests.Grpc;

/// <summary>
/// The node gRPC client (@grpc/grpc-js, <c>node/client.js</c>) against the Grpc.AspNetCore service: directly (the
/// baseline, which also proves the script), through the sidecar's explicit listener and through its outbound capture
/// listener to a service's virtual address. Needs <c>node</c> on PATH and
/// <c>npm ci</c> run in <c>Grpc/node</c> (.ci/run does both); a missing piece fails the test saying which.
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
        Assert.True(
            Directory.Exists(Path.Combine(folder, "node_modules", "@grpc", "grpc-js")),
            $"node_modules is missing in {folder}: run 'npm ci --no-audit --no-fund' there (.ci/run does).");

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
