using System.Collections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Proxy.Core.Transport;

/// <summary>
/// The feature collection of a <see cref="SocketConnection"/>: the connection's own features are answered by type
/// test, without storage; features others add (Kestrel adds three or four per connection, a TLS stage its own) live
/// in a small array. A <see cref="FeatureCollection"/> would allocate a dictionary per connection, measured as the
/// largest single allocation of a short connection after the header lists.
/// </summary>
internal sealed class ConnectionFeatures(SocketConnection connection) : IFeatureCollection
{
    private static readonly Type[] OwnTypes =
    [
        typeof(IConnectionIdFeature),
        typeof(IConnectionTransportFeature),
        typeof(IConnectionItemsFeature),
        typeof(IConnectionLifetimeFeature),
        typeof(IConnectionEndPointFeature),
        typeof(IConnectionSocketFeature),
        typeof(ITakeOverSocketFeature),
    ];

    private KeyValuePair<Type, object>[]? _added;
    private int _addedCount;
    private int _revision;

    public bool IsReadOnly => false;

    public int Revision => _revision;

    public object? this[Type key]
    {
        get
        {
            ArgumentNullException.ThrowIfNull(key);

            // Added (or replaced) features first: a stage may replace one of ours, e.g. the transport feature.
            for (var i = 0; i < _addedCount; i++)
            {
                if (_added![i].Key == key)
                {
                    return _added[i].Value;
                }
            }

            return IsOwn(key) ? connection : null;
        }

        set
        {
            ArgumentNullException.ThrowIfNull(key);
            _revision++;
            for (var i = 0; i < _addedCount; i++)
            {
                if (_added![i].Key == key)
                {
                    if (value is null)
                    {
                        _added[i] = _added[--_addedCount];
                        _added[_addedCount] = default;
                    }
                    else
                    {
                        _added[i] = new KeyValuePair<Type, object>(key, value);
                    }

                    return;
                }
            }

            if (value is null || (ReferenceEquals(value, connection) && IsOwn(key)))
            {
                // Removing a feature we never stored, or setting one of ours to ourselves: nothing to keep. (Removing
                // one of our own features is not supported: the connection is what it is.)
                return;
            }

            _added ??= new KeyValuePair<Type, object>[4];
            if (_addedCount == _added.Length)
            {
                Array.Resize(ref _added, _added.Length * 2);
            }

            _added[_addedCount++] = new KeyValuePair<Type, object>(key, value);
        }
    }

    public TFeature? Get<TFeature>() => (TFeature?)this[typeof(TFeature)];

    public void Set<TFeature>(TFeature? instance) => this[typeof(TFeature)] = instance;

    public IEnumerator<KeyValuePair<Type, object>> GetEnumerator()
    {
        for (var i = 0; i < _addedCount; i++)
        {
            yield return _added![i];
        }

        foreach (var type in OwnTypes)
        {
            if (!IsAdded(type))
            {
                yield return new KeyValuePair<Type, object>(type, connection);
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private static bool IsOwn(Type key) => Array.IndexOf(OwnTypes, key) >= 0;

    private bool IsAdded(Type key)
    {
        for (var i = 0; i < _addedCount; i++)
        {
            if (_added![i].Key == key)
            {
                return true;
            }
        }

        return false;
    }
}
