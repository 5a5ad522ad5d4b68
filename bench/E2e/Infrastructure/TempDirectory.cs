namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>A directory under the system temp folder, removed on dispose unless asked to keep it.</summary>
internal sealed class TempDirectory : IDisposable
{
    private readonly bool _keep;

    public TempDirectory(string prefix, bool keep)
    {
        _keep = keep;
        Path = Directory.CreateTempSubdirectory(prefix).FullName;
    }

    public string Path { get; }

    public string Combine(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        if (_keep)
        {
            Console.WriteLine($"kept temp dir {Path}");
            return;
        }

        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException ex)
        {
            Console.Error.WriteLine($"warning: could not remove {Path}: {ex.Message}");
        }
        catch (UnauthorizedAccessException ex)
        {
            Console.Error.WriteLine($"warning: could not remove {Path}: {ex.Message}");
        }
    }
}
