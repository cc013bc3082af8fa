# shift's checkpoint plugin for pt-online-schema-change 3.2.1 (loaded with --plugin=<this file>).
#
# Why a plugin and not a patched copy of the tool: pt-osc 3.2.1's own NibbleIterator already
# starts at a saved boundary (its `resume` argument, which pt-table-checksum uses); pt-osc just
# never passes one. This file passes it, and writes a checkpoint after every chunk, without a
# line of the stock script changed. The Python side (shift_provider.ptosc.checkpoint) only uses
# it with the exact stock script whose checksum it knows, because it wraps these internals:
#
#   NibbleIterator::new     gets `resume => {lower_boundary, upper_boundary}` on a resume, and
#                           its after_nibble callback is wrapped to write the checkpoint
#   pt_online_schema_change::check_orig_table  on a resume, accepts exactly this copy's three triggers (nothing else)
#   pt_online_schema_change::create_new_table  on a resume, reuses the recorded shadow table instead of creating one
#   the ALTER of the shadow on a resume it is already altered: `--alter` reads as empty between
#                           the before_alter_new_table and after_alter_new_table hooks only, so
#                           pt-osc's renamed-column map (computed before) still comes from the ALTER
#   pt_online_schema_change::create_triggers   on a resume, reuses the three triggers (they kept the shadow in sync)
#   Progress::update        on a resume, the percentage counts the rows copied before the stop
#
# Environment: SHIFT_PTOSC_CHECKPOINT (the file written after every chunk, atomically: temp file
# then rename), SHIFT_PTOSC_RESUME (a checkpoint to resume from; absent: copy from the first row).
# A boundary it cannot pass back to NibbleIterator safely (NULL, a comma, non-printable bytes)
# makes the checkpoint say `resumable: false` with the reason: the next copy starts from zero.
package pt_online_schema_change_plugin;

use strict;
use warnings;
no warnings "once";
use JSON::PP ();

my $JSON = JSON::PP->new->canonical(1)->utf8(1);
my $self_ref;   # the plugin object, for the wrapped subs below
my $resume;     # the checkpoint resumed from, or undef
my $blank_alter = 0;

sub _say { print "shift checkpoint: $_[0]\n"; }

sub _read_resume {
   my $path = $ENV{SHIFT_PTOSC_RESUME};
   return undef unless $path;
   open(my $fh, '<', $path) or die "shift checkpoint: cannot read $path: $!\n";
   local $/;
   my $data = $JSON->decode(<$fh>);
   close $fh;
   die "shift checkpoint: $path is not a resumable checkpoint\n"
      unless $data->{resumable} && ref $data->{upper} eq 'ARRAY' && @{$data->{upper}};
   return $data;
}

sub new {
   my ($class, %args) = @_;
   my $self = bless { %args, rows_this_run => 0, chunks_this_run => 0 }, $class;
   $self_ref = $self;
   $resume = _read_resume();
   $self->{rows_before} = $resume ? ($resume->{rows_copied} || 0) : 0;
   return $self;
}

sub init {
   my ($self, %args) = @_;
   $self->{orig_tbl} = $args{orig_tbl};
   if ( $resume ) {
      _say("resuming after boundary (" . join(', ', @{$resume->{upper}}) . "), "
         . "$self->{rows_before} rows copied before, into the existing `$resume->{new_table}`");
   }
}

# -- the checkpoint -------------------------------------------------------------------------

sub _safe_value {
   my ($v) = @_;
   return 'a NULL' unless defined $v;
   return 'a value holding a comma' if $v =~ /,/;
   return 'a value that is not printable ASCII' if $v !~ /\A[\x20-\x7e]*\z/;
   return undef;
}

sub _write_checkpoint {
   my ($self, %c) = @_;
   my $path = $ENV{SHIFT_PTOSC_CHECKPOINT} or return;
   my $tmp = "$path.tmp.$$";
   open(my $fh, '>', $tmp) or die "shift checkpoint: cannot write $tmp: $!\n";
   print {$fh} $JSON->encode(\%c);
   close($fh) or die "shift checkpoint: cannot write $tmp: $!\n";
   rename($tmp, $path) or die "shift checkpoint: cannot rename $tmp to $path: $!\n";
}

sub _after_chunk {
   my ($self, $iter, $tbl) = @_;
   my $cnt = $tbl->{row_cnt} || 0;
   $self->{rows_this_run} += $cnt;
   $self->{chunks_this_run}++;
   my $bounds = $iter->boundaries();
   my @upper = @{ $bounds->{upper} || [] };
   my $why;
   if ( $iter->one_nibble() ) {
      $why = 'the table is copied in one chunk';
   } elsif ( !@upper ) {
      $why = 'no chunk boundary';
   } else {
      foreach my $v ( @upper ) {
         my $bad = _safe_value($v);
         if ( $bad ) { $why = "the chunk key holds $bad"; last; }
      }
   }
   if ( $why && !$self->{said_not_resumable}++ ) {
      _say("no resumable checkpoint: $why (a stopped copy starts again from the first row)");
   }
   $self->_write_checkpoint(
      version       => 1,
      resumable     => $why ? JSON::PP::false : JSON::PP::true,
      reason        => $why || '',
      new_table     => $self->{new_table} || '',
      index         => $iter->nibble_index() || '',
      lower         => $why ? [] : [ @{ $bounds->{lower} || [] } ],
      upper         => $why ? [] : \@upper,
      rows_copied   => $self->{rows_before} + $self->{rows_this_run},
      rows_this_run => $self->{rows_this_run},
      chunks_this_run => $self->{chunks_this_run},
      row_estimate  => $iter->row_estimate() || 0,
      chunk_size    => $tbl->{chunk_size} || 0,
      resumed_from  => $resume ? $resume->{upper} : undef,
   );
}

sub after_create_new_table {
   my ($self, %args) = @_;
   $self->{new_table} = $args{new_tbl}->{tbl};
}

sub before_alter_new_table { $blank_alter = 1 if $resume; }
sub after_alter_new_table  { $blank_alter = 0; }

sub before_copy_rows {
   my ($self) = @_;
   my $pr = $self->{orig_tbl} && $self->{orig_tbl}->{progress};
   if ( $resume && $pr ) {
      $pr->{shift_rows_before} = $self->{rows_before};
      bless $pr, 'ShiftResumedProgress';
   }
}

sub after_copy_rows {
   my ($self) = @_;
   _say("copied $self->{rows_this_run} rows in $self->{chunks_this_run} chunk(s) in this run, "
      . ($self->{rows_before} + $self->{rows_this_run}) . " in all");
}

# -- the wrapped internals ------------------------------------------------------------------

no warnings 'redefine';

{
   my $orig_get = \&OptionParser::get;
   *OptionParser::get = sub {
      my ($o, $opt) = @_;
      return '' if $blank_alter && $opt eq 'alter';
      return $orig_get->(@_);
   };
}

{
   my $orig_new = \&NibbleIterator::new;
   *NibbleIterator::new = sub {
      my ($class, %args) = @_;
      if ( my $cbs = $args{callbacks} ) {
         my $orig_after = $cbs->{after_nibble};
         $args{callbacks} = { %$cbs, after_nibble => sub {
            my (%cb) = @_;
            # The chunk's INSERT ... SELECT has committed: every row up to its upper boundary is in
            # the shadow table, and the triggers keep it so. Recorded before the load/lag waits.
            $self_ref->_after_chunk($cb{NibbleIterator}, $cb{tbl}) if $self_ref && $cb{NibbleIterator};
            return $orig_after ? $orig_after->(%cb) : undef;
         } };
      }
      if ( $resume ) {
         if ( $resume->{chunk_size} && $resume->{chunk_size} > 0 ) {
            $args{chunk_size} = $resume->{chunk_size};
            $args{tbl}->{chunk_size} = $resume->{chunk_size} if $args{tbl};
         }
         my $iter = $orig_new->($class, %args, resume => {
            lower_boundary => join(',', @{$resume->{lower} || $resume->{upper}}),
            upper_boundary => join(',', @{$resume->{upper}}),
         });
         if ( $iter->one_nibble() ) {
            # NibbleIterator copies nothing for a one-chunk table given a resume: copy it all again.
            _say("the table now fits in one chunk: copying it whole into the existing shadow table");
            return $orig_new->($class, %args);
         }
         if ( ($resume->{index} || '') ne ($iter->nibble_index() || '') ) {
            _say("the chunk index is now " . ($iter->nibble_index() || '?') . ", not $resume->{index}: "
               . "copying from the first row into the existing shadow table");
            return $orig_new->($class, %args);
         }
         return $iter;
      }
      return $orig_new->($class, %args);
   };
}

if ( $ENV{SHIFT_PTOSC_RESUME} ) {
   my $orig_check = \&pt_online_schema_change::check_orig_table;
   *pt_online_schema_change::check_orig_table = sub {
      my (%args) = @_;
      my ($tbl, $cxn, $q) = @args{qw(orig_tbl Cxn Quoter)};
      my $prefix = 'pt_osc_' . $tbl->{db} . '_' . $tbl->{tbl};
      $prefix =~ s/\W/_/g;
      $prefix = substr($prefix, 0, 60);
      my %want = map { ("${prefix}_$_" => 1) } qw(del upd ins);
      my $rows = $cxn->dbh()->selectall_arrayref(
         'SELECT TRIGGER_NAME, ACTION_STATEMENT FROM INFORMATION_SCHEMA.TRIGGERS '
         . 'WHERE TRIGGER_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?', {}, $tbl->{db}, $tbl->{tbl});
      my $shadow = $q->quote($tbl->{db}, $resume->{new_table});
      my @ours = grep { $want{$_->[0]} && index($_->[1], $shadow) >= 0 } @$rows;
      if ( @$rows != 3 || @ours != 3 ) {
         die "shift checkpoint: cannot resume: the table's triggers are ("
            . join(', ', map { $_->[0] } @$rows) . "), not exactly this copy's three writing into $shadow\n";
      }
      # Exactly our three: let the stock check pass them as it would with --preserve-triggers.
      my $orig_opt = \&OptionParser::get;
      no warnings 'redefine';
      local *OptionParser::get = sub {
         return 1 if $_[1] eq 'preserve-triggers';
         return $orig_opt->(@_);
      };
      return $orig_check->(%args);
   };

   *pt_online_schema_change::create_new_table = sub {
      my (%args) = @_;
      my ($tbl, $cxn, $q, $tp) = @args{qw(orig_tbl Cxn Quoter TableParser)};
      my $name = $resume->{new_table};
      die "shift checkpoint: cannot resume: the shadow table `$tbl->{db}`.`$name` does not exist\n"
         unless $tp->check_table(dbh => $cxn->dbh(), db => $tbl->{db}, tbl => $name);
      print "Reusing new table $tbl->{db}.$name (shift resume).\n";
      return { db => $tbl->{db}, tbl => $name, name => $q->quote($tbl->{db}, $name) };
   };

   *pt_online_schema_change::create_triggers = sub {
      my (%args) = @_;
      my $tbl = $args{orig_tbl};
      my $prefix = 'pt_osc_' . $tbl->{db} . '_' . $tbl->{tbl};
      $prefix =~ s/\W/_/g;
      $prefix = substr($prefix, 0, 60);
      print "Reusing triggers ${prefix}_del, ${prefix}_upd, ${prefix}_ins (shift resume).\n";
      return map { "${prefix}_$_" } qw(del upd ins);
   };
}

package ShiftResumedProgress;

# pt-osc's Progress counts the rows copied in this run against the whole table's estimate; a
# resumed copy's percentage must count the rows copied before the stop too, and its ETA must come
# from this run's rate alone. Only the 'time' report is used (shift passes --progress=time,N).
our @ISA = ('Progress');

sub update {
   my ($self, $callback, %args) = @_;
   my $before = $self->{shift_rows_before} || 0;
   my $now = $args{now} || time;
   $self->{iterations}++;
   return if $self->{report} eq 'time' && $self->{interval} > $now - $self->{last_reported};
   $self->{last_reported} = $now;
   my $run = $callback->();
   my $completed = $run + $before;
   my $jobsize = $self->{jobsize};
   return if $completed > $jobsize;
   my $fraction = $completed > 0 ? $completed / $jobsize : 0;
   $self->{fraction} = $fraction;
   my $elapsed = $now - $self->{start};
   my ($remaining, $eta) = (0, $now);
   if ( $run > 0 && $elapsed > 0 ) {
      $remaining = ($jobsize - $completed) / ($run / $elapsed);
      $eta = $now + int($remaining);
   }
   $self->{callback}->($fraction, $elapsed, $remaining, $eta, $completed);
}

1;
