namespace Proxy.Core.Balancing;

/// <summary>The randomness balancers use, injected so tests can script it.</summary>
public interface IRandomSource
{
    /// <summary>A uniformly distributed integer in [0, <paramref name="maxExclusive"/>); maxExclusive is at least 1.</summary>
    int Next(int maxExclusive);
}

/// <summary>Thread-safe randomness from <see cref="System.Random.Shared"/>.</summary>
public sealed class SharedRandomSource : IRandomSource
{
    public static SharedRandomSource Instance { get; } = new();

    private SharedRandomSource()
    {
    }

    public int Next(int maxExclusive) => System.Random.Shared.Next(maxExclusive);
}
