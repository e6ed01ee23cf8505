#!/usr/bin/python3
# Writes the seed corpora of the interop fuzz harnesses (tests/fuzz/corpus/{zip,pickle,torch_file})
# with Debian's python3-torch 1.13: small, valid files of every form the readers accept. Run once
# and commit the output; `--pickle-save FILE` adds a file written by libtorch's torch::pickle_save.
import argparse
import collections
import io
import os
import pickle
import pickletools
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_net():
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.eval()


def saved(obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


def data_pkl(zip_bytes):
    z = zipfile.ZipFile(io.BytesIO(zip_bytes))
    return z.read([n for n in z.namelist() if n.endswith('/data.pkl')][0])


def legacy_object_pickle(data):
    """The fourth pickle of a legacy file (magic, protocol version, sys_info, then the object)."""
    f = io.BytesIO(data)
    for _ in range(3):
        for _op in pickletools.genops(f):
            pass
    start = f.tell()
    for _op in pickletools.genops(f):
        pass
    return data[start:f.tell()]


def write(kind, name, data):
    d = os.path.join(HERE, 'corpus', kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def dtypes_dict():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4 - 1
    return collections.OrderedDict([
        ('f64', torch.linspace(-2, 2, 5, dtype=torch.float64)), ('f16', torch.tensor([0.5, -1.25], dtype=torch.float16)),
        ('bf16', torch.tensor([3.0, -0.125], dtype=torch.bfloat16)), ('i64', torch.tensor([-7, 2**40], dtype=torch.int64)),
        ('u8', torch.tensor([0, 255], dtype=torch.uint8)), ('b', torch.tensor([True, False])),
        ('t', base.t()), ('slice', base[1:, 1:3]), ('shared', base), ('scalar', torch.tensor(2.5)),
        ('empty', torch.zeros(0, 3)), ('p', torch.nn.Parameter(torch.ones(2)))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pickle-save', help='a small file written by torch::pickle_save')
    args = ap.parse_args()
    net = tiny_net()
    sd = net.state_dict()
    small = saved(sd)
    nested = saved({'state_dict': collections.OrderedDict(('module.' + k, v) for k, v in sd.items()), 'epoch': 3,
                    'arch': 'tiny', 'optimizer': torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9).state_dict()})
    legacy = saved(sd, _use_new_zipfile_serialization=False)
    legacy1 = saved({'w': torch.arange(3.0)}, _use_new_zipfile_serialization=False, pickle_protocol=1)
    proto4 = saved(dtypes_dict(), pickle_protocol=4)
    scripted, traced = io.BytesIO(), io.BytesIO()
    torch.jit.save(torch.jit.script(net), scripted)
    torch.jit.save(torch.jit.trace(net, torch.randn(1, 1, 4, 4)), traced)
    files = {'small_sd.pt': small, 'nested.pt': nested, 'legacy.pt': legacy, 'legacy_proto1.pt': legacy1,
             'dtypes.pt': saved(dtypes_dict()), 'dtypes_proto4.pt': proto4, 'scripted.pt': scripted.getvalue(),
             'traced.pt': traced.getvalue()}
    if args.pickle_save:
        files['pickle_save.pt'] = open(args.pickle_save, 'rb').read()
    for name, data in files.items():
        write('torch_file', name, data)

    # pickles: data.pkl of each zip form, the legacy object pickle, and plain Python values
    for name in ['small_sd.pt', 'nested.pt', 'dtypes_proto4.pt', 'scripted.pt', 'traced.pt'] + (
            ['pickle_save.pt'] if args.pickle_save else []):
        write('pickle', name.replace('.pt', '.pkl'), data_pkl(files[name]))
    write('pickle', 'legacy_object.pkl', legacy_object_pickle(legacy))
    values = {'int': [0, 1, -1, 255, 65535, -2**31, 2**31, 2**63 - 1, -2**63], 'float': [0.5, -1e300, float('inf')],
              'str': ['', 'conv1.weight', 'caf\u00e9 \u2603 \U0001F600'], 'bytes': b'\x00\xff', 'bytearray': bytearray(b'ab'),
              'tuple': (1, (2, 3), ()), 'set': {1, 2}, 'frozenset': frozenset({'a'}), 'none': None, 'bool': [True, False],
              'od': collections.OrderedDict(a=1)}
    for protocol in range(6):
        write('pickle', f'values_p{protocol}.pkl', pickle.dumps(values, protocol=protocol))

    # zips: stored, deflated, zip64 extra fields, an archive comment, empty, torch's own writer
    for name, kw in [('stored.zip', dict(compression=zipfile.ZIP_STORED)),
                     ('deflated.zip', dict(compression=zipfile.ZIP_DEFLATED))]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w', **kw) as z:
            z.writestr('archive/data.pkl', data_pkl(small))
            z.writestr('archive/data/0', b'\x01\x02\x03\x04' * 64)
            z.writestr('empty', b'')
        write('zip', name, buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as z:
        with z.open('big/entry', 'w', force_zip64=True) as f:
            f.write(b'zip64 ' * 100)
        z.comment = b'an archive comment'
    write('zip', 'zip64.zip', buf.getvalue())
    buf = io.BytesIO()
    zipfile.ZipFile(buf, 'w').close()
    write('zip', 'empty.zip', buf.getvalue())
    write('zip', 'torch_small.pt', saved({'w': torch.arange(4.0)}))
    if args.pickle_save:
        write('zip', 'pickle_save.pt', files['pickle_save.pt'])


if __name__ == '__main__':
    main()
