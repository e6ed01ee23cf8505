#!/usr/bin/python3
# Writes the seed corpora of the interop fuzz harnesses (tests/fuzz/corpus/{zip,pickle,torch_file})
# with Debian's python3-torch 1.13: small, valid files of every form the readers accept. Run once
# and commit the output; `--pickle-save FILE` adds a file written by libtorch's torch::pickle_save.
# `--data-parsers` writes only the corpora of plan, config, idx, cifar and progress (no torch).
import argparse
import collections
import gzip
import io
import json
import os
import pickle
import pickletools
import struct
import zipfile

import numpy as np

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


def idx_file(dims, fill):
    data = bytes((fill + i) % 10 for i in range(int(np.prod(dims))))
    return bytes([0, 0, 8, len(dims)]) + b''.join(struct.pack('>I', d) for d in dims) + data


def metrics_counts(n, correct, correct5, loss, classes=10):
    class_n = [n // classes + (1 if c < n % classes else 0) for c in range(classes)]
    class_correct, left = [], correct
    for c in range(classes):
        class_correct.append(min(left, class_n[c]))
        left -= class_correct[-1]
    return {'n': n, 'correct': correct, 'correct5': correct5, 'loss_sum': loss, 'class_n': class_n,
            'class_correct': class_correct}


def data_parser_corpora():
    """plan texts, run-directory JSON, IDX and CIFAR files, lesion progress files."""
    plans = ['intact', 'delete=3,17', 'swap=4:5,7:8', 'order=1-3,5,4,6-9', 'duplicate=4', 'scale=3:0.5',
             'gate=3:residual', 'order=6-1 delete=2;scale=1:0.25,2:1e-3\tgate=4:none,5:shortcut duplicate=3,3',
             'swap=1:2 swap=2:1\nscale=2:-0.5', 'order=1,1,1 duplicate=1 delete=1 gate=1:both']
    for i, text in enumerate(plans):
        write('plan', f'plan{i}.txt', text.encode())

    network = {'in_channels': 1, 'height': 12, 'width': 12, 'num_classes': 10, 'shortcut': 'A', 'num_blocks': 6,
               'num_parameters': 172218}
    train = {'schema_version': 1, 'command': 'train', 'model': 'preresnet14', 'data': 'synthetic:size=12,channels=1',
             'seed': 0, 'options': {'epochs': 3, 'lr': 0.1, 'milestones': [0.5, 0.75]}, 'network': network,
             'normalizer': {'mean': [0.5034], 'std': [0.2321]}, 'residual_scales': [], 'class_names':
             [f'class{i}' for i in range(10)], 'sizes': {'train': 2048, 'val': 0, 'test': 512}, 'source': {},
             'versions': {'unravel': '0.1.0'}, 'threads': 1, 'world_size': 1, 'device': 'cpu',
             'created': '2026-12-01T23:32:30Z', 'updated': '2026-12-01T23:32:30Z'}
    imported = {'schema_version': 1, 'command': 'import', 'model': 'resnet18', 'network': dict(network, in_channels=3),
                'normalizer': {'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]},
                'residual_scales': [1, 0.5, 0.25], 'source': {'file': 'r18.pt', 'format': 'zip'}}
    summary = {'epochs': 3, 'test_error': 0.408, 'test_top5_error': 0.0215, 'test_n': 512, 'schema_version': 1,
               'checkpoint': {'epoch': 3, 'fingerprint': 'fnv1a64:0123456789abcdef'}}
    for name, obj in [('train.json', train), ('import.json', imported), ('summary.json', summary),
                      ('summary_old.json', {'epochs': 2, 'test_error': 0.5})]:
        write('config', name, json.dumps(obj, indent=1).encode())

    for name, data in [('images_2x4x4', idx_file([2, 4, 4], 1)), ('labels_3', idx_file([3], 3)),
                       ('images_1x28x28', idx_file([1, 28, 28], 0))]:
        write('idx', name, data)
        write('idx', name + '.gz', gzip.compress(data, mtime=0))

    pixels = bytes((7 * i) & 0xFF for i in range(3 * 32 * 32))
    write('cifar', 'cifar10_2.bin', bytes([3]) + pixels + bytes([9]) + pixels)
    write('cifar', 'cifar100_1.bin', bytes([19, 99]) + pixels)

    key = {'weights': '0123456789abcdef', 'plans': ['intact', 'delete=1', 'delete=2'], 'images': 96,
           'labels_sum': 432, 'engine': 'prefix', 'batch_size': 16, 'fold': True, 'channels_last': False,
           'recalibrate_bn': 1, 'recalibrate_batch_size': 16, 'seed': 0}  # as fuzz_progress.cpp's
    engine48 = [metrics_counts(48, 40, 47, 20.5), metrics_counts(48, 30, 45, 31.25), metrics_counts(48, 5, 20, 80.0)]
    engine96 = [metrics_counts(96, 80, 94, 41.0), metrics_counts(96, 61, 90, 63.5), metrics_counts(96, 9, 41, 160.0)]
    recal = {'delete=1': metrics_counts(96, 70, 93, 50.0)}
    for name, obj in [('half.json', {'key': key, 'engine_done': 48, 'engine': engine48, 'recalibrated': {}}),
                      ('recalibrating.json', {'key': key, 'engine_done': 96, 'engine': engine96, 'recalibrated': recal}),
                      ('empty.json', {'key': key, 'engine_done': 0, 'engine': [], 'recalibrated': {}})]:
        write('progress', name, json.dumps(obj, separators=(',', ':')).encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pickle-save', help='a small file written by torch::pickle_save')
    ap.add_argument('--data-parsers', action='store_true', help='only the corpora of the data-file parsers')
    args = ap.parse_args()
    if args.data_parsers:
        return data_parser_corpora()
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
