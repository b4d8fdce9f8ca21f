"""Write the SynthPerson toy re-identification set (see occluded_reid/writer.py for the layout).

Run from the repository root::

    python projects/occluded_reid/tools/make_synthperson.py work_dirs/projects/synthperson
"""
import argparse
import os.path as osp
import sys
import time

# The project package lives next to this script's folder (projects/occluded_reid/).
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from occluded_reid import write_synthperson  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--num-train-ids', type=int, default=60)
    parser.add_argument('--images-per-id', type=int, default=12)
    parser.add_argument('--num-test-ids', type=int, default=50)
    parser.add_argument('--gallery-per-id', type=int, default=2)
    parser.add_argument('--query-per-id', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    meta = write_synthperson(
        args.out_dir, num_train_ids=args.num_train_ids, images_per_id=args.images_per_id,
        num_test_ids=args.num_test_ids, gallery_per_id=args.gallery_per_id,
        query_per_id=args.query_per_id, seed=args.seed)
    print(f'wrote {meta["num_train_images"]} training and {meta["num_test_images"]} test images '
          f'to {args.out_dir} in {time.perf_counter() - start:.1f} s; occluded queries by kind: '
          f'{meta["occluded_query_kinds"]}')


if __name__ == '__main__':
    main()
