/**
 * The encoded media corpus that storage and transfer benchmarks share: two 640x360 H.264/AAC
 * courses (PANINI_BENCH_MEDIA_S seconds each, 60 by default) sharing their first third (the intro),
 * and a re-mux with the moov last, a fragmented re-mux and a retitled copy of the first. Made with
 * ffmpeg, where it is installed.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/** Length of each course (PANINI_BENCH_MEDIA_S). */
export const COURSE_SECONDS = Number(process.env.PANINI_BENCH_MEDIA_S ?? 60);

export interface CorpusFile {
  name: string;
  path: string;
  what: string;
}

export function hasFfmpeg(): boolean {
  return !spawnSync('ffmpeg', ['-version']).error;
}

/** Encodes the corpus into `dir` (ffmpeg required) and returns its files, the two courses first. */
export function encodeCourses(dir: string): CorpusFile[] {
  const ffmpeg = (args: string[]): void => {
    const r = spawnSync('ffmpeg', ['-v', 'error', '-y', ...args], { cwd: dir });
    if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')}: ${r.stderr}`);
  };
  const encode = (name: string, pattern: string, tone: number, seconds: number): void =>
    ffmpeg(['-f', 'lavfi', '-i', `${pattern}=size=640x360:rate=25`, '-f', 'lavfi', '-i', `sine=frequency=${tone}:sample_rate=44100`, '-t', String(seconds),
      '-c:v', 'libx264', '-preset', 'veryfast', '-b:v', '1M', '-g', '50', '-bf', '2', '-c:a', 'aac', '-b:a', '128k', name]);
  const intro = Math.round(COURSE_SECONDS / 3);
  encode('intro.mp4', 'testsrc2', 440, intro);
  encode('body-a.mp4', 'testsrc', 550, COURSE_SECONDS - intro);
  encode('body-b.mp4', 'smptebars', 660, COURSE_SECONDS - intro);
  const concat = (out: string, body: string, flags: string[]): void => {
    const list = path.join(dir, `${out}.txt`);
    writeFileSync(list, `file 'intro.mp4'\nfile '${body}'\n`);
    ffmpeg(['-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', ...flags, out]);
  };
  concat('long-a.mp4', 'body-a.mp4', ['-movflags', '+faststart']);
  concat('long-b.mp4', 'body-b.mp4', ['-movflags', '+faststart']);
  ffmpeg(['-i', 'long-a.mp4', '-map', '0', '-c', 'copy', 'long-a-moov-last.mp4']);
  ffmpeg(['-i', 'long-a.mp4', '-map', '0', '-c', 'copy', '-movflags', 'frag_keyframe+empty_moov', 'long-a-fragmented.mp4']);
  ffmpeg(['-i', 'long-a.mp4', '-map', '0', '-c', 'copy', '-metadata', 'title=Lecture 1, corrected', '-movflags', '+faststart', 'long-a-retitled.mp4']);
  const file = (name: string, what: string): CorpusFile => ({ name, path: path.join(dir, name), what });
  return [
    file('long-a.mp4', `${COURSE_SECONDS} s course: intro + body`),
    file('long-b.mp4', 'another course, same intro'),
    file('long-a-moov-last.mp4', 're-mux, moov after mdat'),
    file('long-a-fragmented.mp4', 're-mux, fragmented'),
    file('long-a-retitled.mp4', 'title tag edited'),
  ];
}
